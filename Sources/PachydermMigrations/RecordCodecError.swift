/// Why one etcd value could not be read as a Pachyderm 1.4.x record (or written as 1.5.0).
/// Always names the key; names the field path and byte offset in the value when they can
/// be determined (swift-protobuf's text errors carry neither, so `GogoText` finds them).
public struct RecordCodecError: Error, Sendable, Hashable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        fileprivate enum Base: String, Hashable, Sendable {
            case nonTextByte, unbalancedNesting, unterminatedString, unknownField, invalidFieldValue,
                malformedText, notARecord, invalidParallelismSpec, encodingFailed
        }
        fileprivate let base: Base
        /// A byte gogo's text writer never emits (≥ 0x80 or a control byte) in a value that
        /// otherwise looks like 1.4 text. gogo escapes every such byte as `\ooo`.
        public static let nonTextByte = Code(base: .nonTextByte)
        /// A `<` without its `>` (truncated value) or a `>` without its `<`.
        public static let unbalancedNesting = Code(base: .unbalancedNesting)
        /// A quoted string that never ends (truncated value).
        public static let unterminatedString = Code(base: .unterminatedString)
        /// A field name no 1.4.x release has for this message.
        public static let unknownField = Code(base: .unknownField)
        /// A known field with a value of the wrong type (string for a number, unknown enum name…).
        public static let invalidFieldValue = Code(base: .invalidFieldValue)
        /// Text swift-protobuf rejects where no single field could be blamed.
        public static let malformedText = Code(base: .malformedText)
        /// Neither 1.4 text nor 1.5.0 binary of the record kind its key implies.
        public static let notARecord = Code(base: .notARecord)
        /// A ParallelismSpec strategy 1.4.8 could not interpret either.
        public static let invalidParallelismSpec = Code(base: .invalidParallelismSpec)
        /// The 1.5.0 binary encoding failed (should not happen; report it as a bug).
        public static let encodingFailed = Code(base: .encodingFailed)
        public var description: String { base.rawValue }
    }

    public var code: Code
    /// The etcd key, as `printable` shows it (bytes that are not printable UTF-8 as `\xNN`).
    public var key: String
    /// Dotted proto field path inside the value, e.g. `transform.env.key`, when known.
    public var field: String?
    /// Offset in the value's bytes where the problem starts, when known.
    public var byteOffset: Int?
    /// What happened and what to do about it.
    public var message: String

    public init(code: Code, key: String, field: String? = nil, byteOffset: Int? = nil, message: String) {
        self.code = code
        self.key = key
        self.field = field
        self.byteOffset = byteOffset
        self.message = message
    }

    public var description: String {
        var location = ""
        if let field { location += " field `\(field)`" }
        if let byteOffset { location += " at byte \(byteOffset)" }
        return "\(key):\(location.isEmpty ? "" : location + ":") \(message) [\(code)]"
    }
}
