extension Array where Element == UInt8 {
    /// The key as text a terminal, a log line or a JSON document can show: UTF-8 without
    /// control characters as it is; otherwise every byte outside printable ASCII, and the
    /// backslash, as `\xNN`. Every place that shows a key uses it.
    public var printable: String {
        if let text = String(validating: self, as: UTF8.self), !text.unicodeScalars.contains(where: \.isControl) {
            return text
        }
        var out = ""
        for byte in self {
            if byte >= 0x20 && byte < 0x7f && byte != UInt8(ascii: "\\") {
                out.unicodeScalars.append(Unicode.Scalar(byte))
            } else {
                let hex = String(byte, radix: 16)
                out += "\\x" + (hex.count < 2 ? "0" + hex : hex)
            }
        }
        return out
    }
}

extension Unicode.Scalar {
    /// C0 and C1 controls and DEL: what moves a terminal's cursor or changes its state.
    fileprivate var isControl: Bool { value < 0x20 || (0x7f...0x9f).contains(value) }
}
