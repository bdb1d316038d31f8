import SwiftProtobuf

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// Decoding of gogo-protobuf compact text with swift-protobuf's text-format
/// decoder, plus the diagnostics swift-protobuf does not give: which field, which byte.
enum GogoText {
    /// Deep `Input` cross/union trees exceed swift-protobuf's default of 100. Bounded all
    /// the same: decoding recurses once per level (about 2 KiB of stack each in a debug
    /// build), and 5,000 levels overflowed the main thread's 8 MiB (a crash, not an error).
    static let decodingOptions: TextFormatDecodingOptions = {
        var options = TextFormatDecodingOptions()
        options.messageDepthLimit = RecordCodec.messageDepthLimit
        // Never ignore unknown fields: an unknown name is a record we do not understand.
        options.ignoreUnknownFields = false
        return options
    }()

    /// Offset of the first byte gogo's text writer never emits: it escapes every byte
    /// outside printable ASCII as `\ooo`, so anything else means the value is not gogo text
    /// (and a byte ≥ 0x80 would otherwise silently become U+FFFD).
    static func firstNonTextByte(_ value: [UInt8]) -> Int? {
        value.withUnsafeBufferPointer { buffer in
            for i in 0..<buffer.count where buffer[i] < 0x20 || buffer[i] > 0x7e { return i }
            return nil
        }
    }

    /// Whether the value starts like gogo text: a field name followed by `:` or `<`.
    static func looksLikeText(_ value: [UInt8]) -> Bool {
        guard let first = value.first, isNameStart(first) else { return false }
        for byte in value.dropFirst() {
            if isNameByte(byte) { continue }
            return byte == UInt8(ascii: ":") || byte == UInt8(ascii: "<") || byte == UInt8(ascii: " ")
                || byte == UInt8(ascii: "{")
        }
        return false
    }

    /// Decodes printable-ASCII gogo text into `M`. On failure, locates the offending field
    /// and byte and throws a `RecordCodecError` naming `key`.
    static func decode<M: Message>(_ type: M.Type, value: [UInt8], key: String) throws(RecordCodecError) -> M {
        let text = String(decoding: value, as: UTF8.self)
        do {
            return try M(textFormatString: text, options: decodingOptions)
        } catch {
            throw diagnose(M.self, value: value, key: key, decoderError: error)
        }
    }

    // MARK: - Diagnostics (failure path only; speed does not matter here)

    struct Item {
        var name: String
        var nameOffset: Int
        /// `valueEnd` is exclusive.
        var valueEnd: Int
        /// For `<…>`/`{…}` values: the range between the brackets, and the closing byte.
        var inner: Range<Int>?
        var closer: UInt8
    }

    struct ScanProblem: Error {
        var code: RecordCodecError.Code
        var offset: Int
        var message: String
    }

    static func diagnose<M: Message>(_ type: M.Type, value: [UInt8], key: String, decoderError: any Error)
        -> RecordCodecError
    {
        let messageName = String(describing: M.self).split(separator: "_").last.map(String.init) ?? "\(M.self)"
        // Said at once: locating the culprit would re-decode the value once per level
        // (20 s for a 700 KB value nested 100,000 deep).
        if (decoderError as? TextFormatDecodingError) == .messageDepthLimit {
            return RecordCodecError(
                code: .malformedText, key: key,
                message: "messages nested more than \(RecordCodec.messageDepthLimit) levels deep in this \(messageName) text; "
                    + "no Pachyderm release writes that. Fix or delete the key, then run again.")
        }
        let items: [Item]
        do {
            items = try scanItems(value, in: 0..<value.count)
        } catch {
            return RecordCodecError(
                code: error.code, key: key, byteOffset: error.offset,
                message: "\(error.message) in this \(messageName) text; the value is probably truncated or corrupt. "
                    + "Compare it with the backup, fix or delete the key, then run again.")
        }
        if let culprit = locate(M.self, value: value, items: items, prefix: [], suffix: [], path: []) {
            // One field's text fails on its own: unless its name is unknown, its value is wrong.
            let (code, what): (RecordCodecError.Code, String) =
                (culprit.error as? TextFormatDecodingError) == .unknownField
                ? (.unknownField, "unknown field name") : (.invalidFieldValue, "value of the wrong type")
            return RecordCodecError(
                code: code, key: key, field: culprit.path.joined(separator: "."), byteOffset: culprit.offset,
                message: "\(what) for a 1.4.x \(messageName) (swift-protobuf: \(culprit.error)). "
                    + "No Pachyderm 1.4.0–1.4.9 release wrote this; fix or delete the key, then run again.")
        }
        return RecordCodecError(
            code: .malformedText, key: key,
            message: "not valid 1.4.x \(messageName) text (swift-protobuf: \(decoderError)). "
                + "Fix or delete the key, then run again.")
    }

    /// Finds the innermost field whose text alone (inside its enclosing messages) fails to
    /// decode: decodes `prefix + item + suffix` for each item, recursing into messages.
    private static func locate<M: Message>(
        _ type: M.Type, value: [UInt8], items: [Item], prefix: [UInt8], suffix: [UInt8], path: [String]
    ) -> (path: [String], offset: Int, error: any Error)? {
        for item in items {
            let text = prefix + value[item.nameOffset..<item.valueEnd] + suffix
            do {
                _ = try M(textFormatString: String(decoding: text, as: UTF8.self), options: decodingOptions)
            } catch {
                // Recurse only when the field itself is fine (its empty message decodes):
                // inside an unknown field every item fails, and the field is the culprit.
                if let inner = item.inner, let innerItems = try? scanItems(value, in: inner), !innerItems.isEmpty,
                    decodes(M.self, prefix + value[item.nameOffset..<inner.lowerBound] + [UInt8(ascii: " "), item.closer] + suffix)
                {
                    let innerPrefix = prefix + value[item.nameOffset..<inner.lowerBound] + [UInt8(ascii: " ")]
                    let innerSuffix = [UInt8(ascii: " "), item.closer] + suffix
                    if let deeper = locate(
                        M.self, value: value, items: innerItems, prefix: innerPrefix, suffix: innerSuffix,
                        path: path + [item.name])
                    {
                        return deeper
                    }
                }
                return (path + [item.name], item.nameOffset, error)
            }
        }
        return nil
    }

    private static func decodes<M: Message>(_ type: M.Type, _ text: [UInt8]) -> Bool {
        (try? M(textFormatString: String(decoding: text, as: UTF8.self), options: decodingOptions)) != nil
    }

    static func isNameStart(_ b: UInt8) -> Bool {
        (b >= UInt8(ascii: "a") && b <= UInt8(ascii: "z")) || (b >= UInt8(ascii: "A") && b <= UInt8(ascii: "Z"))
            || b == UInt8(ascii: "_")
    }
    static func isNameByte(_ b: UInt8) -> Bool { isNameStart(b) || (b >= UInt8(ascii: "0") && b <= UInt8(ascii: "9")) }
    static func isSpace(_ b: UInt8) -> Bool { b == 0x20 || b == 0x09 || b == 0x0a || b == 0x0d }

    /// Splits `range` of `value` into its top-level `name:value` items, checking that
    /// brackets balance and strings end. Handles what text format allows: `name: v`,
    /// `name <…>`, `name {…}`, adjacent strings, `[…]` lists, `;`/`,` separators.
    static func scanItems(_ value: [UInt8], in range: Range<Int>) throws(ScanProblem) -> [Item] {
        var items: [Item] = []
        var i = range.lowerBound
        let end = range.upperBound
        func skipSpace() { while i < end, isSpace(value[i]) || value[i] == UInt8(ascii: ";") || value[i] == UInt8(ascii: ",") { i += 1 } }
        while true {
            skipSpace()
            if i >= end { return items }
            let nameOffset = i
            if value[i] == UInt8(ascii: "[") {
                // [extension.name]
                while i < end, value[i] != UInt8(ascii: "]") { i += 1 }
                guard i < end else { throw ScanProblem(code: .malformedText, offset: nameOffset, message: "`[` without `]`") }
                i += 1
            } else if isNameStart(value[i]) {
                while i < end, isNameByte(value[i]) { i += 1 }
            } else if value[i] == UInt8(ascii: ">") || value[i] == UInt8(ascii: "}") {
                throw ScanProblem(
                    code: .unbalancedNesting, offset: i,
                    message: "`\(Character(Unicode.Scalar(value[i])))` closes a message that was never opened")
            } else {
                throw ScanProblem(
                    code: .malformedText, offset: i,
                    message: "expected a field name, found `\(Character(Unicode.Scalar(value[i])))`")
            }
            let name = String(decoding: value[nameOffset..<i], as: UTF8.self)
            skipSpace()
            if i < end, value[i] == UInt8(ascii: ":") { i += 1; skipSpace() }
            guard i < end else {
                throw ScanProblem(code: .malformedText, offset: nameOffset, message: "field `\(name)` has no value")
            }
            var inner: Range<Int>? = nil
            var closer: UInt8 = 0
            let open = value[i]
            if open == UInt8(ascii: "<") || open == UInt8(ascii: "{") {
                let close = try matchingClose(value, openAt: i, end: end)
                inner = (i + 1)..<close
                closer = value[close]
                i = close + 1
            } else if open == UInt8(ascii: "\"") || open == UInt8(ascii: "'") {
                while i < end, value[i] == UInt8(ascii: "\"") || value[i] == UInt8(ascii: "'") {
                    i = try stringEnd(value, quoteAt: i, end: end)
                    skipSpace()
                }
            } else if open == UInt8(ascii: "[") {
                let start = i
                var depth = 0
                repeat {
                    if value[i] == UInt8(ascii: "\"") || value[i] == UInt8(ascii: "'") {
                        i = try stringEnd(value, quoteAt: i, end: end); continue
                    }
                    if value[i] == UInt8(ascii: "[") { depth += 1 }
                    if value[i] == UInt8(ascii: "]") { depth -= 1 }
                    i += 1
                } while i < end && depth > 0
                if depth > 0 { throw ScanProblem(code: .unbalancedNesting, offset: start, message: "`[` is never closed") }
            } else {
                let start = i
                while i < end, !isSpace(value[i]), !"<>{}[];,\"'".utf8.contains(value[i]) { i += 1 }
                if i == start {
                    if value[i] == UInt8(ascii: ">") || value[i] == UInt8(ascii: "}") {
                        throw ScanProblem(
                            code: .unbalancedNesting, offset: i,
                            message: "`\(Character(Unicode.Scalar(value[i])))` closes a message that was never opened")
                    }
                    throw ScanProblem(code: .malformedText, offset: i, message: "field `\(name)` has no value")
                }
            }
            items.append(Item(name: name, nameOffset: nameOffset, valueEnd: i, inner: inner, closer: closer))
        }
    }

    private static func matchingClose(_ value: [UInt8], openAt: Int, end: Int) throws(ScanProblem) -> Int {
        var stack: [Int] = [openAt]
        var i = openAt + 1
        while i < end {
            let b = value[i]
            if b == UInt8(ascii: "\"") || b == UInt8(ascii: "'") {
                i = try stringEnd(value, quoteAt: i, end: end)
                continue
            }
            if b == UInt8(ascii: "<") || b == UInt8(ascii: "{") { stack.append(i) }
            if b == UInt8(ascii: ">") || b == UInt8(ascii: "}") {
                let opener = value[stack.removeLast()]
                let expected = opener == UInt8(ascii: "<") ? UInt8(ascii: ">") : UInt8(ascii: "}")
                if b != expected {
                    throw ScanProblem(
                        code: .unbalancedNesting, offset: i, message: "`\(Character(Unicode.Scalar(b)))` does not match its opening bracket")
                }
                if stack.isEmpty { return i }
            }
            i += 1
        }
        let unclosed = stack.last ?? openAt
        throw ScanProblem(
            code: .unbalancedNesting, offset: unclosed,
            message: "`\(Character(Unicode.Scalar(value[unclosed])))` is never closed")
    }

    /// The offset just past the closing quote of the string opening at `quoteAt`.
    private static func stringEnd(_ value: [UInt8], quoteAt: Int, end: Int) throws(ScanProblem) -> Int {
        let quote = value[quoteAt]
        var i = quoteAt + 1
        while i < end {
            if value[i] == UInt8(ascii: "\\") { i += 2; continue }
            if value[i] == quote { return i + 1 }
            i += 1
        }
        throw ScanProblem(code: .unterminatedString, offset: quoteAt, message: "a quoted string is never closed")
    }
}
