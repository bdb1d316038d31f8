import EtcdGateway

/// What the engine needs to know about one product's records, for one version path.
/// The engine moves bytes, fences writes and keeps the journal; a `RecordMigration` says
/// which keys are records, which lane (ordering group) each belongs to and how each
/// value changes. Pachyderm's implementation lives in `PachydermMigrations`.
public protocol RecordMigration: Sendable {
    /// Version the cluster is migrated from and to (for the journal and history).
    var fromVersion: String { get }
    var toVersion: String { get }
    /// Whole roots scanned, backed up before the first write and restored by `restore`.
    var backupPrefixes: [[UInt8]] { get }
    /// The ordering group of a record key, or nil for a key to leave untouched (index
    /// keys, counters, scratch …). Records in one lane keep their relative mod-revision order.
    func lane(of key: [UInt8]) -> String?
    /// Converts one record. Throws with the key named when it cannot.
    func convert(_ record: KeyValue) throws(RecordConversionError) -> RecordConversion
    /// The scan's view of one record: its conversion, plus what it shows about the cluster
    /// being at rest (e.g. work in progress). One call, so the value is decoded once.
    func examine(_ record: KeyValue, findings: inout [AtRestFinding]) throws(RecordConversionError) -> RecordConversion
    /// Adds what makes the cluster not at rest, as seen in a key that is not a record.
    func inspect(_ kv: KeyValue, findings: inout [AtRestFinding])
}

public struct RecordConversion: Sendable {
    public enum Action: Sendable {
        /// Write this value in place of the old one.
        case rewrite([UInt8])
        /// Already in the target form (a resumed or repeated run, or another tool's work).
        case alreadyMigrated
    }
    public var action: Action
    /// Keys to create in the same txn as the rewrite (only if absent), e.g. Pachyderm
    /// 1.5's `openCommits/<id>` for a commit migrated open.
    public var companions: [(key: [UInt8], value: [UInt8])]
    public var notes: [ConversionNote]

    public init(action: Action, companions: [(key: [UInt8], value: [UInt8])] = [], notes: [ConversionNote] = []) {
        self.action = action
        self.companions = companions
        self.notes = notes
    }
}

/// Something a conversion did that the operator should hear about: a dropped field, a
/// normalized value, a disagreement in the source data.
public struct ConversionNote: Sendable, Hashable, Codable, CustomStringConvertible {
    public enum Kind: String, Sendable, Hashable, Codable, CustomStringConvertible {
        /// A field the new release has no place for was dropped (the backup keeps the original).
        case droppedField
        /// A value was rewritten to the form the new release interprets the way the old one did.
        case normalized
        /// Two fields of the record contradict each other (e.g. `stopped` vs `state`).
        case disagreement
        /// Anything else worth a look (empty value, open commit, already migrated…).
        case warning

        public var description: String { rawValue }
    }
    public var kind: Kind
    public var key: String
    /// The field the note is about, when it is about one.
    public var field: String?
    public var message: String

    public init(kind: Kind, key: String, field: String? = nil, message: String) {
        self.kind = kind
        self.key = key
        self.field = field
        self.message = message
    }

    public var description: String { "\(kind) \(key)\(field.map { " [\($0)]" } ?? ""): \(message)" }
}

/// Why one record cannot be converted: the key, and where in its value and why when known.
public struct RecordConversionError: Error, Sendable, Hashable, Codable, CustomStringConvertible {
    public var key: String
    /// A stable code for the reason (the product's), when there is one.
    public var code: String?
    /// The field path inside the value, when known.
    public var field: String?
    /// Offset in the value's bytes where the problem starts, when known.
    public var byteOffset: Int?
    public var message: String

    public init(key: String, message: String, code: String? = nil, field: String? = nil, byteOffset: Int? = nil) {
        self.key = key
        self.code = code
        self.field = field
        self.byteOffset = byteOffset
        self.message = message
    }

    public var description: String {
        var place = ""
        if let field { place += " field `\(field)`" }
        if let byteOffset { place += " at byte \(byteOffset)" }
        return "\(key):\(place.isEmpty ? "" : place + ":") \(message)\(code.map { " [\($0)]" } ?? "")"
    }
}

/// One reason the cluster is not at rest.
public struct AtRestFinding: Sendable, Hashable, Codable {
    /// What was found, as a stable code. The engine finds only `foreignWrite`; a
    /// `RecordMigration` defines its product's own kinds (`extension AtRestFinding.Kind`).
    public struct Kind: RawRepresentable, Sendable, Hashable, Codable, CustomStringConvertible {
        public var rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        public var description: String { rawValue }

        /// A record someone else changed since the run started.
        public static let foreignWrite = Kind(rawValue: "foreign-write")
    }
    public var kind: Kind
    public var key: String
    public var detail: String
    /// A blocking finding refuses the run; a non-blocking one is a warning.
    public var blocking: Bool

    public init(kind: Kind, key: String, detail: String, blocking: Bool) {
        self.kind = kind
        self.key = key
        self.detail = detail
        self.blocking = blocking
    }
}

extension String {
    var bytes: [UInt8] { Array(utf8) }
}
