/// The five record collections Pachyderm 1.4 → 1.5 rewrites.
public enum RecordKind: String, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    case repo, commit, branch, pipeline, job
    public var description: String { rawValue }

    /// The collection's name in etcd (`repos`), also the kind of its lanes (`LaneID.kind`)
    /// and of its counts in the history.
    public var collection: String {
        switch self {
        case .repo: "repos"
        case .commit: "commits"
        case .branch: "branches"
        case .pipeline: "pipelines"
        case .job: "jobs"
        }
    }
}

/// What a key in Pachyderm's etcd is, as far as the migration is concerned.
public enum PachydermKeyClass: Sendable, Hashable {
    /// A protobuf record. `group` narrows the ordering group, the set of records whose
    /// relative mod-revision order users can see and the migration must keep, to one repo
    /// (`commits/<repo>`, `branches/<repo>`); nil: the whole kind (`repos`, `pipelines`, `jobs`).
    case record(RecordKind, group: String?)
    /// A secondary-index key (`<collection>__index_<index>/…`); its value is a plain string.
    /// `collection` is the collection path without the root, e.g. `jobs` or `commits/edges`.
    case indexKey(collection: String)
    case repoRefCount
    case scratch
    case worker
    /// `openCommits/<commitID>`: 1.5.0 only.
    case openCommit
    /// Anything else, under Pachyderm's roots or not: never touched.
    case other
}

/// Pachyderm's key layout under its two configurable etcd roots.
public struct PachydermLayout: Sendable, Hashable {
    public let pfsPrefix: String
    public let ppsPrefix: String
    // Computed once: classify runs for every key of a dump.
    private let pfsRoot: [UInt8]
    private let ppsRoot: [UInt8]

    public init(pfsPrefix: String = "pachyderm_pfs", ppsPrefix: String = "pachyderm_pps") {
        self.pfsPrefix = pfsPrefix
        self.ppsPrefix = ppsPrefix
        self.pfsRoot = Array("\(pfsPrefix)/".utf8)
        self.ppsRoot = Array("\(ppsPrefix)/".utf8)
    }

    /// The two roots, each with its trailing slash: every key Pachyderm stores is under one
    /// (what a backup, a restore and a migration read).
    public var roots: [[UInt8]] { [pfsRoot, ppsRoot] }

    /// The range prefix of a collection, WITH its trailing slash: without it a range over
    /// `…/jobs` also returns the `…/jobs__index_…` keys.
    public func collectionPrefix(_ kind: RecordKind) -> [UInt8] {
        switch kind {
        case .repo, .commit, .branch: Array("\(pfsPrefix)/\(kind.collection)/".utf8)
        case .pipeline, .job: Array("\(ppsPrefix)/\(kind.collection)/".utf8)
        }
    }

    public var openCommitsPrefix: [UInt8] { Array("\(pfsPrefix)/openCommits/".utf8) }

    public func classify(_ key: [UInt8]) -> PachydermKeyClass {
        let pfs = pfsRoot, pps = ppsRoot
        if key.starts(with: pfs) {
            return classifyPFS(Array(key[pfs.count...]))
        }
        if key.starts(with: pps) {
            return classifyPPS(Array(key[pps.count...]))
        }
        return .other
    }

    private static let indexMarker = Array("__index_".utf8)
    private static let slash = UInt8(ascii: "/")

    private func classifyPFS(_ rest: [UInt8]) -> PachydermKeyClass {
        let segments = rest.split(separator: Self.slash, maxSplits: 2, omittingEmptySubsequences: false)
        guard let first = segments.first else { return .other }
        let firstName = String(decoding: first, as: UTF8.self)
        if first.contains(Self.indexMarker) {
            return .index(segment: firstName)
        }
        switch firstName {
        case "repos":
            // repos/<repo>: repo names never contain '/'.
            guard segments.count == 2, !segments[1].isEmpty else { return .other }
            return .record(.repo, group: nil)
        case "commits", "branches":
            // Per-repo collections: commits/<repo>/<id>, and their indexes commits/<repo>__index_…/…
            guard segments.count >= 2, !segments[1].isEmpty else { return .other }
            let repo = String(decoding: segments[1], as: UTF8.self)
            if segments[1].contains(Self.indexMarker) {
                return .index(segment: "\(firstName)/\(repo)")
            }
            guard segments.count == 3, !segments[2].isEmpty else { return .other }
            if firstName == "commits" {
                // A commit ID has no '/'.
                guard !segments[2].contains(Self.slash) else { return .other }
                return .record(.commit, group: repo)
            }
            return .record(.branch, group: repo)
        case "repoRefCounts": return segments.count >= 2 ? .repoRefCount : .other
        case "scratch": return segments.count >= 2 ? .scratch : .other
        case "openCommits": return segments.count >= 2 ? .openCommit : .other
        default: return .other
        }
    }

    private func classifyPPS(_ rest: [UInt8]) -> PachydermKeyClass {
        let segments = rest.split(separator: Self.slash, maxSplits: 1, omittingEmptySubsequences: false)
        guard let first = segments.first else { return .other }
        let firstName = String(decoding: first, as: UTF8.self)
        if first.contains(Self.indexMarker) {
            return .index(segment: firstName)
        }
        switch firstName {
        case "pipelines":
            guard segments.count == 2, !segments[1].isEmpty, !segments[1].contains(Self.slash) else { return .other }
            return .record(.pipeline, group: nil)
        case "jobs":
            guard segments.count == 2, !segments[1].isEmpty, !segments[1].contains(Self.slash) else { return .other }
            return .record(.job, group: nil)
        case "workers": return segments.count == 2 ? .worker : .other
        default: return .other
        }
    }
}

extension PachydermKeyClass {
    /// `.indexKey` for the collection in front of `__index_` in `segment` (e.g. `jobs`,
    /// `commits/edges`), if it is one of the five collections; `.other` otherwise.
    fileprivate static func index(segment: String) -> PachydermKeyClass {
        let bytes = Array(segment.utf8)
        let marker = Array("__index_".utf8)
        guard let at = (0...(bytes.count - marker.count)).first(where: { bytes[$0..<($0 + marker.count)].elementsEqual(marker) })
        else { return .other }
        let collection = String(decoding: bytes[..<at], as: UTF8.self)
        let root = collection.split(separator: "/", maxSplits: 1).first.map(String.init) ?? collection
        guard ["repos", "commits", "branches", "pipelines", "jobs"].contains(root) else { return .other }
        return .indexKey(collection: collection)
    }
}

extension ArraySlice where Element == UInt8 {
    fileprivate func contains(_ needle: [UInt8]) -> Bool {
        guard needle.count <= count else { return false }
        var i = startIndex
        while i + needle.count <= endIndex {
            if self[i..<(i + needle.count)].elementsEqual(needle) { return true }
            i += 1
        }
        return false
    }
}
