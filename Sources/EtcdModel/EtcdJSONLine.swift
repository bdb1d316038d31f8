/// One `KeyValue` as etcd's v3 JSON gateway renders it (`mvccpb.KeyValue` through
/// grpc-gateway): fields in proto order, `key`/`value` standard base64, int64 as decimal
/// strings, zero values omitted. Hand-written both ways: dumps hold millions of lines.
public enum EtcdJSONLine {
    public static func append(_ kv: KeyValue, to out: inout [UInt8]) {
        out.append(contentsOf: #"{"key":""#.utf8)
        Base64.encode(kv.key, into: &out)
        out.append(UInt8(ascii: "\""))
        appendInt(",\"create_revision\":\"", kv.createRevision, &out)
        appendInt(",\"mod_revision\":\"", kv.modRevision, &out)
        appendInt(",\"version\":\"", kv.version, &out)
        if !kv.value.isEmpty {
            out.append(contentsOf: #","value":""#.utf8)
            Base64.encode(kv.value, into: &out)
            out.append(UInt8(ascii: "\""))
        }
        appendInt(",\"lease\":\"", kv.lease, &out)
        out.append(contentsOf: "}\n".utf8)
    }

    private static func appendInt(_ prefix: StaticString, _ value: Int64, _ out: inout [UInt8]) {
        guard value != 0 else { return }
        out.append(contentsOf: UnsafeBufferPointer(start: prefix.utf8Start, count: prefix.utf8CodeUnitCount))
        out.append(contentsOf: String(value).utf8)
        out.append(UInt8(ascii: "\""))
    }

    public struct ParseError: Error, Sendable {
        public var message: String
    }

    /// Parses one line: a flat JSON object whose values are strings or integers. Unknown
    /// members are ignored (newer etcd versions may add some); `key` is required.
    public static func parse(_ line: UnsafeBufferPointer<UInt8>) throws(ParseError) -> KeyValue {
        var scanner = Scanner(line)
        var kv = KeyValue(key: [], value: [])
        var sawKey = false
        try scanner.expect(UInt8(ascii: "{"))
        scanner.skipSpace()
        if scanner.next == UInt8(ascii: "}") { throw ParseError(message: "empty object: no `key`") }
        repeat {
            let name = String(decoding: try scanner.string(), as: UTF8.self)
            try scanner.expect(UInt8(ascii: ":"))
            try assign(try scanner.value(of: name), to: name, in: &kv)
            if name == "key" { sawKey = true }
        } while try scanner.anotherMember()
        try scanner.expectEnd()
        guard sawKey else { throw ParseError(message: "no `key`") }
        return kv
    }

    /// Sets the member `name` (its raw string or digits) in `kv`; ignores a member it does not know.
    private static func assign(_ raw: [UInt8], to name: String, in kv: inout KeyValue) throws(ParseError) {
        func int() throws(ParseError) -> Int64 {
            guard let v = Int64(String(decoding: raw, as: UTF8.self)) else {
                throw ParseError(message: "`\(name)` is not a decimal int64")
            }
            return v
        }
        switch name {
        case "key":
            guard let bytes = Base64.decode(raw) else { throw ParseError(message: "`key` is not standard base64") }
            kv.key = bytes
        case "value":
            guard let bytes = Base64.decode(raw) else { throw ParseError(message: "`value` is not standard base64") }
            kv.value = bytes
        case "create_revision": kv.createRevision = try int()
        case "mod_revision": kv.modRevision = try int()
        case "version": kv.version = try int()
        case "lease": kv.lease = try int()
        default: break
        }
    }

    /// Reads one line left to right: the JSON tokens a flat object of strings and integers has.
    private struct Scanner {
        let line: UnsafeBufferPointer<UInt8>
        var i = 0
        var n: Int { line.count }

        init(_ line: UnsafeBufferPointer<UInt8>) { self.line = line }

        /// The byte at the position, nil at the end.
        var next: UInt8? { i < n ? line[i] : nil }

        mutating func skipSpace() { while i < n, line[i] == 0x20 || line[i] == 0x09 || line[i] == 0x0d { i += 1 } }

        mutating func expect(_ c: UInt8) throws(ParseError) {
            skipSpace()
            guard i < n, line[i] == c else {
                throw ParseError(message: "expected `\(Character(Unicode.Scalar(c)))` at column \(i + 1)")
            }
            i += 1
        }

        mutating func string() throws(ParseError) -> [UInt8] {
            try expect(UInt8(ascii: "\""))
            // Fast path: etcd's strings are base64 or digits, never escaped.
            let start = i
            while i < n, line[i] != UInt8(ascii: "\""), line[i] != UInt8(ascii: "\\") { i += 1 }
            if i < n, line[i] == UInt8(ascii: "\"") {
                i += 1
                return Array(line[start..<(i - 1)])
            }
            var out = Array(line[start..<i])
            while i < n, line[i] != UInt8(ascii: "\"") {
                if line[i] == UInt8(ascii: "\\") {
                    i += 1
                    guard i < n else { break }
                    try unescape(into: &out)
                    i += 1
                    continue
                }
                out.append(line[i])
                i += 1
            }
            guard i < n else { throw ParseError(message: "unterminated string") }
            i += 1
            return out
        }

        /// The character after a backslash, at the position.
        private mutating func unescape(into out: inout [UInt8]) throws(ParseError) {
            switch line[i] {
            case UInt8(ascii: "n"): out.append(0x0a)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "r"): out.append(0x0d)
            case UInt8(ascii: "u"):
                // Only ASCII escapes occur in etcd's output (values are base64).
                guard i + 4 < n, let code = UInt32(String(decoding: line[(i + 1)...(i + 4)], as: UTF8.self), radix: 16),
                    let scalar = Unicode.Scalar(code)
                else { throw ParseError(message: "bad \\u escape at column \(i + 1)") }
                out.append(contentsOf: Array(String(Character(scalar)).utf8))
                i += 4
            default: out.append(line[i])
            }
        }

        /// The value of member `name`: a string's bytes, or an integer's digits.
        mutating func value(of name: String) throws(ParseError) -> [UInt8] {
            skipSpace()
            guard i < n else { throw ParseError(message: "missing value for `\(name)`") }
            if line[i] == UInt8(ascii: "\"") { return try string() }
            let start = i
            while i < n, line[i] == UInt8(ascii: "-") || (line[i] >= UInt8(ascii: "0") && line[i] <= UInt8(ascii: "9")) { i += 1 }
            guard i > start else { throw ParseError(message: "value of `\(name)` is neither a string nor an integer") }
            return Array(line[start..<i])
        }

        /// After a member: true past a `,` (another follows), false past the closing `}`.
        mutating func anotherMember() throws(ParseError) -> Bool {
            skipSpace()
            guard i < n else { throw ParseError(message: "missing `}`") }
            if line[i] == UInt8(ascii: ",") {
                i += 1
                skipSpace()
                return true
            }
            if line[i] == UInt8(ascii: "}") {
                i += 1
                return false
            }
            throw ParseError(message: "expected `,` or `}` at column \(i + 1)")
        }

        mutating func expectEnd() throws(ParseError) {
            skipSpace()
            guard i == n else { throw ParseError(message: "trailing characters after the object at column \(i + 1)") }
        }
    }
}

/// Standard base64 (RFC 4648, with padding), as etcd's JSON gateway writes bytes.
public enum Base64 {
    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
    private static let reverse: [UInt8] = {
        var table = [UInt8](repeating: 0xff, count: 256)
        for (i, c) in alphabet.enumerated() { table[Int(c)] = UInt8(i) }
        return table
    }()

    public static func encode(_ bytes: [UInt8]) -> String {
        var out: [UInt8] = []
        encode(bytes, into: &out)
        return String(decoding: out, as: UTF8.self)
    }

    public static func encode(_ bytes: [UInt8], into out: inout [UInt8]) {
        out.reserveCapacity(out.count + (bytes.count + 2) / 3 * 4)
        alphabet.withUnsafeBufferPointer { alphabet in
            bytes.withUnsafeBufferPointer { bytes in encode(bytes, alphabet, into: &out) }
        }
    }

    private static func encode(_ bytes: UnsafeBufferPointer<UInt8>, _ alphabet: UnsafeBufferPointer<UInt8>, into out: inout [UInt8]) {
        var i = 0
        let n = bytes.count
        while i + 3 <= n {
            let v = UInt32(bytes[i]) << 16 | UInt32(bytes[i + 1]) << 8 | UInt32(bytes[i + 2])
            out.append(alphabet[Int(v >> 18)]); out.append(alphabet[Int(v >> 12 & 63)])
            out.append(alphabet[Int(v >> 6 & 63)]); out.append(alphabet[Int(v & 63)])
            i += 3
        }
        if n - i == 1 {
            let v = UInt32(bytes[i]) << 16
            out.append(alphabet[Int(v >> 18)]); out.append(alphabet[Int(v >> 12 & 63)])
            out.append(UInt8(ascii: "=")); out.append(UInt8(ascii: "="))
        } else if n - i == 2 {
            let v = UInt32(bytes[i]) << 16 | UInt32(bytes[i + 1]) << 8
            out.append(alphabet[Int(v >> 18)]); out.append(alphabet[Int(v >> 12 & 63)])
            out.append(alphabet[Int(v >> 6 & 63)]); out.append(UInt8(ascii: "="))
        }
    }

    public static func decode(_ text: [UInt8]) -> [UInt8]? {
        reverse.withUnsafeBufferPointer { reverse in text.withUnsafeBufferPointer { decode($0, reverse) } }
    }

    private static func decode(_ text: UnsafeBufferPointer<UInt8>, _ reverse: UnsafeBufferPointer<UInt8>) -> [UInt8]? {
        guard text.count % 4 == 0 else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(text.count / 4 * 3)
        var i = 0
        while i < text.count {
            let last = i + 4 == text.count
            let c0 = reverse[Int(text[i])], c1 = reverse[Int(text[i + 1])]
            guard c0 != 0xff, c1 != 0xff else { return nil }
            let pad2 = last && text[i + 2] == UInt8(ascii: "=")
            let pad3 = last && text[i + 3] == UInt8(ascii: "=")
            guard !pad2 || pad3 else { return nil }
            let c2 = pad2 ? 0 : reverse[Int(text[i + 2])]
            let c3 = pad3 ? 0 : reverse[Int(text[i + 3])]
            guard c2 != 0xff, c3 != 0xff else { return nil }
            let v = UInt32(c0) << 18 | UInt32(c1) << 12 | UInt32(c2) << 6 | UInt32(c3)
            out.append(UInt8(v >> 16))
            if !pad2 { out.append(UInt8(truncatingIfNeeded: v >> 8)) }
            if !pad3 { out.append(UInt8(truncatingIfNeeded: v)) }
            i += 4
        }
        return out
    }
}
