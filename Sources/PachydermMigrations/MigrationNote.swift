/// One structured report entry about one key: something the migration dropped, normalized,
/// found inconsistent, or wants a person to know. Never silent: every entry has the key.
public struct MigrationNote: Sendable, Hashable, CustomStringConvertible {
    public struct Kind: Hashable, Sendable, CustomStringConvertible {
        fileprivate enum Base: String, Hashable, Sendable {
            case droppedField, normalized, disagreement, warning
        }
        fileprivate let base: Base
        /// A field 1.5.0 has no place for was dropped (the backup keeps the original).
        public static let droppedField = Kind(base: .droppedField)
        /// A value was rewritten to the form 1.5.0 interprets the way 1.4.8 did.
        public static let normalized = Kind(base: .normalized)
        /// Two fields of the record contradict each other (e.g. `stopped` vs `state`).
        public static let disagreement = Kind(base: .disagreement)
        /// Anything else worth a look (empty value, open commit, already migrated…).
        public static let warning = Kind(base: .warning)
        public var description: String { base.rawValue }
    }

    public var kind: Kind
    /// The etcd key, as `printable` shows it.
    public var key: String
    /// Dotted proto field path, when the note is about one field.
    public var field: String?
    public var message: String

    public init(kind: Kind, key: String, field: String? = nil, message: String) {
        self.kind = kind
        self.key = key
        self.field = field
        self.message = message
    }

    public var description: String {
        "\(kind) \(key)\(field.map { " [\($0)]" } ?? ""): \(message)"
    }
}
