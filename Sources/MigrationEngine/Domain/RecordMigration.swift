import EtcdGateway
import EtcdModel

/// What the engine needs to know about one product's records, for one version path.
/// The engine moves bytes, fences writes and keeps the journal; a `RecordMigration` says
/// which keys are records, which lane (ordering group) each belongs to and how each
/// value changes. Pachyderm's implementation lives in `PachydermMigrations`.
public protocol RecordMigration: Sendable {
    /// What the product counts over the records one scan reads (a census, a forecast …).
    associatedtype Tally: ScanTally = NoScanTally
    /// Version the cluster is migrated from and to (for the journal and history).
    var fromVersion: String { get }
    var toVersion: String { get }
    /// Whole roots scanned, backed up before the first write and restored by `restore`.
    var backupPrefixes: [[UInt8]] { get }
    /// The lane (ordering group) of a record key, or nil for a key to leave untouched (index
    /// keys, counters, scratch …). Records in one lane keep their relative mod-revision order.
    func lane(of key: [UInt8]) -> LaneID?
    /// The scan's one call per key: whether it is a record, its lane and its conversion (or
    /// why it cannot convert, with the key named). What the key shows about the cluster being
    /// at rest (e.g. work in progress) goes to `findings`, what the product counts to `tally`.
    /// One call, so the value is decoded once.
    func examine(_ kv: KeyValue, findings: inout [AtRestFinding], tally: inout Tally) -> Examination
}

/// What a product counts over the records of one scan. Each scan starts from a fresh one
/// and returns it (`ClusterScan.tally`): a scan restarted after a compaction counts every
/// record once.
public protocol ScanTally: Sendable {
    init()
}

/// For a product that counts nothing beyond what the scan does.
public struct NoScanTally: ScanTally {
    public init() {}
}

/// What one key is to the scan.
public enum Examination: Sendable {
    /// Not a record (index, counter, scratch …): left untouched.
    case untouched
    /// A record of this lane, converted or not convertible.
    case record(LaneID, Result<RecordConversion, RecordConversionError>)
}

/// A lane: the records of one ordering group, written in their original mod-revision order.
public struct LaneID: Sendable, Hashable, CustomStringConvertible {
    /// The kind of record (`commits`): what the scan, the result and the history count by.
    public var kind: String
    /// The group within the kind when the kind has several (the repo of `commits/<repo>`);
    /// nil when every record of the kind is one group.
    public var group: String?

    public init(kind: String, group: String? = nil) {
        self.kind = kind
        self.group = group
    }

    /// The lane's name, the last part of its cursor key in the journal (`Namespace.laneKey`)
    /// and how it is shown: `commits/images`. Made only here, and read back only by
    /// `init(name:)`: cursor keys in etcd keep this form, so a run interrupted by an earlier
    /// version resumes.
    public var name: String { group.map { "\(kind)/\($0)" } ?? kind }
    public var description: String { name }

    /// The lane a name (`name`) stands for: the kind up to the first `/`, the group after it
    /// (`commits/images` → commits, images). Kinds hold no `/`; groups may.
    public init(name: String) {
        guard let slash = name.firstIndex(of: "/") else {
            self.init(kind: name)
            return
        }
        self.init(kind: String(name[..<slash]), group: String(name[name.index(after: slash)...]))
    }
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
    public var companions: [Companion]
    public var notes: [ConversionNote]

    public init(action: Action, companions: [Companion] = [], notes: [ConversionNote] = []) {
        self.action = action
        self.companions = companions
        self.notes = notes
    }
}

/// A key created in the same txn as its record's rewrite, only if absent.
public struct Companion: Sendable, Hashable {
    public var key: [UInt8]
    public var value: [UInt8]

    public init(key: [UInt8], value: [UInt8]) {
        self.key = key
        self.value = value
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
    /// Why, as a stable code: the product's own (`extension RecordConversionError.Code`);
    /// encoded as its text.
    public struct Code: RawRepresentable, Sendable, Hashable, Codable, CustomStringConvertible {
        public var rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        public var description: String { rawValue }
    }
    public var key: String
    /// A stable code for the reason, when there is one.
    public var code: Code?
    /// The field path inside the value, when known.
    public var field: String?
    /// Offset in the value's bytes where the problem starts, when known.
    public var byteOffset: Int?
    public var message: String

    public init(key: String, message: String, code: Code? = nil, field: String? = nil, byteOffset: Int? = nil) {
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
