/// A Pachyderm release as `--from`/`--to` name it: `1.4.8`, or `1.4.x` for any patch level.
public struct PachydermVersion: Sendable, Hashable, Comparable, CustomStringConvertible {
    public var major: Int
    public var minor: Int
    /// nil: the `x` wildcard.
    public var patch: Int?

    public init(_ major: Int, _ minor: Int, _ patch: Int?) {
        self.major = major
        self.minor = minor
        self.patch = patch
    }

    /// Parses `1.4.8`, `v1.4.8`, `1.4.x`, `1.4`; nil when it is not a version at all.
    public init?(parsing text: String) {
        var text = Substring(text)
        if text.first == "v" { text = text.dropFirst() }
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 2 || parts.count == 3, let major = Int(parts[0]), let minor = Int(parts[1]),
            major >= 0, minor >= 0
        else { return nil }
        if parts.count == 3 {
            if parts[2] == "x" || parts[2] == "X" || parts[2] == "*" {
                self.init(major, minor, nil)
            } else if let patch = Int(parts[2]), patch >= 0 {
                self.init(major, minor, patch)
            } else {
                return nil
            }
        } else {
            self.init(major, minor, nil)
        }
    }

    public var description: String { "\(major).\(minor).\(patch.map(String.init) ?? "x")" }

    public static func < (a: Self, b: Self) -> Bool {
        (a.major, a.minor, a.patch ?? -1) < (b.major, b.minor, b.patch ?? -1)
    }
}

/// One registered rewrite between releases, with its per-record-kind transform.
public struct VersionStep: Sendable {
    public var name: String
    /// Every source release the step accepts (it decodes records of all of them).
    public var from: ClosedRange<PachydermVersion>
    public var to: PachydermVersion
    /// Record kinds whose values the step rewrites; others are not touched.
    public var kinds: Set<RecordKind>
    public var transform: @Sendable (RecordKind, _ key: [UInt8], _ value: [UInt8]) throws(RecordCodecError) -> ConvertedValue

    public init(
        name: String, from: ClosedRange<PachydermVersion>, to: PachydermVersion, kinds: Set<RecordKind>,
        transform: @escaping @Sendable (RecordKind, [UInt8], [UInt8]) throws(RecordCodecError) -> ConvertedValue
    ) {
        self.name = name
        self.from = from
        self.to = to
        self.kinds = kinds
        self.transform = transform
    }
}

/// The steps `pachmigrate` knows.
public struct VersionStepRegistry: Sendable {
    public var steps: [VersionStep]

    public init(steps: [VersionStep]) { self.steps = steps }

    /// 1.4.0 … 1.4.9 → 1.5.0.
    public static let standard = VersionStepRegistry(steps: [
        VersionStep(
            name: "pachyderm-1.4.x-to-1.5.0",
            from: PachydermVersion(1, 4, 0)...PachydermVersion(1, 4, 9), to: PachydermVersion(1, 5, 0),
            kinds: Set(RecordKind.allCases),
            transform: { (kind, key, value) throws(RecordCodecError) in
                try Pachyderm14To15Step.convert(kind: kind, key: key, value: value)
            })
    ])

    /// Releases the planner accepts, newest patch last.
    public static let known14 = (0...9).map { PachydermVersion(1, 4, $0) }
    public static let known15 = (0...3).map { PachydermVersion(1, 5, $0) }
    /// What `--to` defaults to.
    public static let defaultTarget = PachydermVersion(1, 5, 0)

    /// The stamps a pachd of `version` reads: every known release of its minor (patch
    /// releases share one metadata format). Throws for a version this tool does not know,
    /// so that `wait` says so at once instead of waiting for a stamp that never comes.
    public static func stampsReadable(by version: String) throws(VersionPlanError) -> Set<String> {
        guard let wanted = PachydermVersion(parsing: version), wanted.patch != nil, knows(version) else {
            throw VersionPlanError(
                code: .unknownVersion,
                message: "\(version) is not a release pachmigrate knows; give the pachd release exactly, e.g. 1.5.0 (it knows 1.5.0–1.5.3)")
        }
        return Set((known14 + known15).filter { $0.major == wanted.major && $0.minor == wanted.minor }.map(\.description))
    }

    /// Whether `version` (a stamp, so with its patch level) is a release this tool knows.
    public static func knows(_ version: String) -> Bool {
        PachydermVersion(parsing: version).map { known14.contains($0) || known15.contains($0) } ?? false
    }
}

/// What `--from X --to Y` will do.
public struct MigrationPlan: Sendable {
    public var from: PachydermVersion
    public var to: PachydermVersion
    /// Empty when no record needs rewriting (e.g. 1.5.0 → 1.5.2).
    public var steps: [VersionStep]
    /// One or two sentences for the operator.
    public var summary: String
    /// What the run is for.
    public var purpose: Purpose = .upgrade
    public var needsRewrite: Bool { !steps.isEmpty }

    public enum Purpose: String, Sendable, Hashable, Codable {
        /// 1.4 records to 1.5.
        case upgrade
        /// A 1.5 cluster no pachmigrate run has stamped: every record is checked for what
        /// another migration left behind, and repaired by the same step and policy.
        case repair
    }
}

public struct VersionPlanError: Error, Sendable, Hashable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        fileprivate enum Base: String, Hashable, Sendable { case unknownVersion, unsupportedSource, unsupportedPath }
        fileprivate let base: Base
        /// Not a version, or a release that does not exist / pachmigrate does not know.
        public static let unknownVersion = Code(base: .unknownVersion)
        /// A release no migration exists from (≤ 1.3).
        public static let unsupportedSource = Code(base: .unsupportedSource)
        /// Both known, but no path (downgrade, or a target beyond 1.5.x).
        public static let unsupportedPath = Code(base: .unsupportedPath)
        public var description: String { base.rawValue }
    }
    public var code: Code
    public var message: String
    public var description: String { message }
}

public enum VersionPlanner {
    /// Repairs a cluster whose records are 1.5 binary but that pachmigrate did not migrate
    /// (Pachyderm's own routine, or a 1.5 pachd on 1.4 data, may have left it half done): the
    /// 1.4 → 1.5 step reads both encodings, so the same converter and policy repair it.
    public static func repairPlan(at version: String, to toText: String, registry: VersionStepRegistry = .standard)
        throws(VersionPlanError) -> MigrationPlan
    {
        var plan = try plan(from: version, to: toText, registry: registry)
        guard plan.from.minor == 5, plan.to.minor == 5, let step = registry.steps.first(where: { $0.to.minor == 5 }) else {
            return plan
        }
        plan.steps = [step]
        plan.purpose = .repair
        plan.summary =
            "\(plan.from) → \(plan.to), repair: the records are 1.5 binary but no pachmigrate run stamped the cluster, "
            + "so every record is checked for what another migration (Pachyderm's own, or a 1.5 pachd on 1.4 data) left "
            + "behind, and repaired by step \(step.name) with the same policy as 1.4 records."
        return plan
    }

    /// Plans `--from from --to to` with `registry`.
    public static func plan(from fromText: String, to toText: String, registry: VersionStepRegistry = .standard)
        throws(VersionPlanError) -> MigrationPlan
    {
        guard let from = PachydermVersion(parsing: fromText) else {
            throw VersionPlanError(code: .unknownVersion, message: "--from \(fromText) is not a Pachyderm version; write it like 1.4.8 or 1.4.x")
        }
        guard let to = PachydermVersion(parsing: toText) else {
            throw VersionPlanError(code: .unknownVersion, message: "--to \(toText) is not a Pachyderm version; write it like 1.5.0")
        }
        if from.major == 1 && from.minor <= 3 || from.major == 0 {
            throw VersionPlanError(
                code: .unsupportedSource,
                message: "--from \(from): Pachyderm 1.3 and older kept their metadata elsewhere (not in these etcd "
                    + "collections) and no migration script to 1.4 exists; pachmigrate cannot upgrade it. "
                    + "Recreate the cluster on 1.4 or later.")
        }
        let known = VersionStepRegistry.known14 + VersionStepRegistry.known15
        func isKnown(_ v: PachydermVersion) -> Bool {
            v.patch == nil ? known.contains { $0.major == v.major && $0.minor == v.minor } : known.contains(v)
        }
        guard isKnown(from) else {
            throw VersionPlanError(
                code: .unknownVersion, message: "--from \(from) is not a release pachmigrate knows (it knows 1.4.0–1.4.9 and 1.5.0–1.5.3)")
        }
        guard isKnown(to) else {
            throw VersionPlanError(code: .unknownVersion, message: "--to \(to) is not a release pachmigrate knows (it migrates to 1.5.0–1.5.3)")
        }
        if to.major == 1 && to.minor == 4 {
            throw VersionPlanError(
                code: .unsupportedPath,
                message: "--to \(to): 1.4 patch releases share one format; there is nothing to migrate. pachmigrate upgrades to 1.5.")
        }
        if from.minor == 5 {
            // 1.5 patch levels (up or down) store the same binary messages.
            return MigrationPlan(
                from: from, to: to, steps: [],
                summary: "\(from) → \(to): 1.5.x patch releases store the same metadata; no record needs rewriting.")
        }
        // from is 1.4.x (any patch level or the wildcard); every 1.4 step decodes every 1.4.x record.
        let steps = registry.steps.filter { step in
            let sourceOK = from.patch == nil ? step.from.lowerBound.minor == from.minor : step.from.contains(from)
            return sourceOK && step.to.major == 1 && step.to.minor == 5
        }
        guard let step = steps.first else {
            throw VersionPlanError(code: .unsupportedPath, message: "no registered step from \(from) to \(to)")
        }
        let tail = to == step.to ? "" : "; then \(step.to) → \(to) needs no rewrite"
        return MigrationPlan(
            from: from, to: to, steps: [step],
            summary: "\(from) → \(to): step \(step.name) rewrites repos, commits, branches, pipelines and jobs from "
                + "1.4.x text to \(step.to) binary (records of every 1.4 patch level are accepted)\(tail).")
    }
}
