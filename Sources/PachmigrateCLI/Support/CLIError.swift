import ArgumentParser
import EtcdGateway
import MigrationEngine
import PachydermMigrations

#if canImport(Glibc)
import Glibc
#endif

/// The process exit codes, stable and documented (README "Exit codes", `--help`). Public
/// so that what is built on them (deploy/base/migration-job.yaml's podFailurePolicy) is checked
/// against this table rather than a copy of it.
public enum ExitStatus: Int32, CaseIterable, Sendable {
    case ok = 0
    case failure = 1
    case usage = 2
    case lockHeld = 3
    case notAtRest = 4
    case unsupportedVersion = 5
    case verificationFailed = 6
    case interrupted = 7
    case conversionFailed = 8
    case outOfSpace = 9
    /// 128 + the signal's number, as a shell reports a process a signal ended.
    case stoppedBySIGHUP = 129
    case stoppedBySIGINT = 130
    case stoppedBySIGTERM = 143

    /// The status of a run `signal` stopped before its first write.
    static func stoppedBy(_ signal: Int32?) -> ExitStatus {
        switch signal {
        case SIGTERM: .stoppedBySIGTERM
        case SIGHUP: .stoppedBySIGHUP
        default: .stoppedBySIGINT
        }
    }

    var meaning: String {
        switch self {
        case .ok: "success, or nothing to do"
        case .failure: "anything else (etcd unreachable, authentication, I/O …)"
        case .usage: "bad flags or arguments"
        case .lockHeld: "another migrator holds the lock"
        case .notAtRest:
            "the cluster is not at rest, or someone else wrote during the run, or a restore stopped half way; "
                + "or restore refused: not the backup's cluster, or newer writes (a flag overrides)"
        case .unsupportedVersion: "no migration path between the versions"
        case .verificationFailed: "verify found problems"
        case .interrupted: "interrupted (signal, lost lock, etcd gone away); run the same command again to resume"
        case .conversionFailed: "a record could not be converted (each is named)"
        case .outOfSpace:
            "etcd would run out of space: refused before any write, stopped before the quota (no alarm), or NOSPACE: make room, then run again"
        case .stoppedBySIGHUP:
            "stopped by SIGHUP (the terminal closed) " + Self.beforeTheFirstWrite
        case .stoppedBySIGINT:
            "stopped by SIGINT (Ctrl-C) " + Self.beforeTheFirstWrite
        case .stoppedBySIGTERM:
            "stopped by SIGTERM " + Self.beforeTheFirstWrite
        }
    }

    /// What a signal before the first write leaves.
    private static let beforeTheFirstWrite =
        "before the first write: nothing was written; the lock is free, or held until its lease runs out "
        + "if etcd did not answer or a second signal quit at once"

    /// Whether running the same command again, unchanged, can succeed: a failure that may
    /// be transient (etcd unreachable, I/O) or an interrupted run, which resumes. Every other
    /// non-zero status needs a person (a flag, the lock's holder, the cluster, a record) and
    /// a retry would only repeat it. The migration Job retries exactly these.
    public var retryable: Bool {
        switch self {
        case .failure, .interrupted, .stoppedBySIGHUP, .stoppedBySIGINT, .stoppedBySIGTERM: true
        case .ok, .usage, .lockHeld, .notAtRest, .unsupportedVersion, .verificationFailed, .conversionFailed, .outOfSpace: false
        }
    }

    /// A few words, for the line in each command's help that names the codes it returns.
    var shortMeaning: String {
        switch self {
        case .ok: "success"
        case .failure: "failure (etcd unreachable, I/O …)"
        case .usage: "bad flags"
        case .lockHeld: "lock held"
        case .notAtRest: "refused: not at rest, or not the backup's cluster"
        case .unsupportedVersion: "no migration path"
        case .verificationFailed: "problems found"
        case .interrupted: "interrupted, resumable"
        case .conversionFailed: "a record cannot be converted"
        case .outOfSpace: "etcd out of space"
        case .stoppedBySIGHUP: "hangup before the first write"
        case .stoppedBySIGINT: "Ctrl-C before the first write"
        case .stoppedBySIGTERM: "SIGTERM before the first write"
        }
    }

    /// The whole table, once, in the root help (and README "Exit codes"). Wrapped by hand
    /// with a hanging indent: ArgumentParser would wrap a long row back to the margin.
    static var helpText: String {
        "Exit codes:\n"
            + allCases.map { status in
                let number = "\(status.rawValue)" + String(repeating: " ", count: max(0, 3 - "\(status.rawValue)".count))
                return wrap(status.meaning, width: 72, first: "  \(number) ", rest: "      ")
            }.joined(separator: "\n")
    }

    /// One line for a command's help: only the codes it can return, the table being in the root help.
    static func helpLine(_ codes: [ExitStatus]) -> String {
        wrap(
            codes.map { "\($0.rawValue) \($0.shortMeaning)" }.joined(separator: "; ") + " (all codes: pachmigrate --help).",
            width: 78, first: "Exit status: ", rest: "  ")
    }
}

/// The name an operator knows a stop signal by.
func signalName(_ signal: Int32) -> String {
    switch signal {
    case SIGHUP: "SIGHUP"
    case SIGINT: "SIGINT"
    case SIGTERM: "SIGTERM"
    default: "signal \(signal)"
    }
}

/// An error of the command line itself: usage, files, or a refusal with its exit status.
struct CLIError: Error, CustomStringConvertible {
    var status: ExitStatus
    var message: String
    var keys: [String] = []
    /// The JSON envelope's error code, where it is not the status's name.
    var kind: String?

    init(_ status: ExitStatus, _ message: String, keys: [String] = [], kind: String? = nil) {
        self.status = status
        self.message = message
        self.keys = keys
        self.kind = kind
    }

    var description: String { message }
}

/// Maps any error a command can meet to what the operator is told and the exit status.
func describe(_ error: any Error) -> (status: ExitStatus, kind: String, message: String, keys: [String]) {
    switch error {
    case let error as CLIError:
        return (error.status, error.kind ?? "\(error.status)", error.message, error.keys)
    case let error as MigrationError:
        let status: ExitStatus =
            switch error.code {
            case .lockHeld: .lockHeld
            case .notAtRest, .foreignWrite, .restoreRefused, .restoreUnfinished: .notAtRest
            case .unsupportedVersion: .unsupportedVersion
            case .verificationFailed: .verificationFailed
            case .interrupted, .leaseLost: .interrupted
            case .stoppedBeforeWriting: .stoppedBy(error.signal)
            case .conversionFailed: .conversionFailed
            case .outOfSpace: .outOfSpace
            default: .failure
            }
        if let space = error.space {
            return (status, error.code.description, error.message + "\n" + spaceRemedy(space), error.keys.map(\.description))
        }
        // An etcd failure keeps etcd's own code, so scripts can tell "unreachable" from "denied".
        let kind = error.underlying.map { "etcd-\($0.code)" } ?? error.code.description
        let next =
            error.heldLock.flatMap(remedy(forHolderGone:)) ?? error.lockLeftHeldSeconds.map(remedy(forLockLeftHeld:))
            ?? remedy(for: error.code) ?? error.underlying.flatMap(remedy(for:))
        let message = error.message + (next.map { (error.message.hasSuffix(".") ? " " : ". ") + $0 + "." } ?? "")
        return (status, kind, message, error.keys.map(\.description))
    case let error as EtcdError:
        return (.failure, "etcd-\(error.code)", error.description, [])
    case let error as VersionPlanError:
        return (.unsupportedVersion, "unsupported-version", error.message, [])
    default:
        return (.failure, "error", "\(error)", [])
    }
}

/// What the operator does next, for the engine's refusals that leave it to the product to say.
func remedy(for code: MigrationError.Code) -> String? {
    switch code {
    case .notAtRest:
        """
        Quiesce the cluster in this order while pachd still runs: stop every pipeline (`pachctl stop-pipeline <name>` for each \
        one `pachctl list-pipeline` lists), wait until `pachctl list-job` shows no job running, finish (`pachctl finish-commit`) \
        or delete (`pachctl delete-commit`) every open commit (`pachctl list-commit <repo>` shows them; or pass \
        --allow-open-commits), stop whatever runs put-file, then scale pachd to zero (`kubectl scale deployment pachd \
        --replicas=0`) and run again (README: "Upgrading a production cluster")
        """
    case .lockHeld:
        "Wait for it (--wait-lock), or if it is stuck, see `pachmigrate lock show` and `pachmigrate lock break`"
    case .foreignWrite:
        "Stop whatever writes to the cluster (pachd, its pipelines and workers) before running pachmigrate again"
    case .stoppedBeforeWriting:
        "The lock is free: run the same command again when you are ready"
    case .backupFailed:
        "The backup's directory must exist and be writable, with room for the backup, and nothing else at its path; "
            + "fix that or choose another --backup path, then run again"
    default:
        nil
    }
}

/// What the operator does next about the lock a stopped run could not release (etcd did not
/// answer the revoke).
func remedy(forLockLeftHeld seconds: Int64) -> String {
    "The lock stays held until its lease runs out, within \(seconds) s: run the same command again then "
        + "(with --wait-lock 1m it waits for that)"
}

/// What the operator does next about a lock whose holder died on this host (killed, or its
/// terminal closed) and so never released it; nil while it may still run.
func remedy(forHolderGone lock: LockInspection) -> String? {
    guard lock.holderProcessGone == true else { return nil }
    let within = lock.leaseRemainingSeconds >= 0 ? ", within \(lock.leaseRemainingSeconds) s" : ""
    return """
        pid \(lock.holder.pid) no longer runs on this host: that run ended without releasing the lock (killed, quit at once, or its \
        terminal closed), and etcd frees the lock when its lease runs out\(within). Run the same command again then (with \
        --wait-lock 1m it waits for that), or free the lock now with `pachmigrate lock break`
        """
}

/// What the operator does next when etcd itself refused, whatever the engine was doing.
func remedy(for error: EtcdError) -> String? {
    switch error.code {
    case .permissionDenied: "README \"Least privilege\" gives the roles each command needs"
    default: nil
    }
}

/// The ways out when etcd would run out of space, or did.
func spaceRemedy(_ space: OutOfSpace) -> String {
    let revision = space.compactTo.map(String.init) ?? "<current revision, from etcdctl endpoint status -w json>"
    if let estimate = space.estimate {
        let defragment =
            estimate.mode == .compaction
            ? "\n  - or run it as a user with the root role: --compact then also defragments, which shrinks the backend as it goes;" : ""
        return """
            Space: backend \(ByteSize.describe(estimate.currentBytes))\(estimate.inUseBytes.map { " (\(ByteSize.describe($0)) in use)" } ?? ""), \
            expected growth \(ByteSize.describe(estimate.expectedGrowthBytes)), projected \(ByteSize.describe(estimate.projectedBytes)), \
            quota \(ByteSize.describe(estimate.quotaBytes)) (--etcd-quota: etcd's --quota-backend-bytes, which etcd does not tell; \
            without the flag, etcd's own default of \(ByteSize(bytes: SpacePolicy().quotaBytes).defaultValueDescription) is assumed).
            Ways out:
              - run with --compact: the migration compacts etcd's history behind itself and, as root, defragments every member \
            when one nears the quota (history before the run is lost; the backup keeps every original value);\(defragment)
              - or compact and defragment etcd first: etcdctl compact \(revision) --physical, then etcdctl defrag on every member;
              - or raise etcd's --quota-backend-bytes (and pass the new value as --etcd-quota).
            """
    }
    let all = space.members.map(\.endpoint).filter { !$0.isEmpty }
    let endpoints = all.isEmpty ? "" : " --endpoints=\(all.joined(separator: ","))"
    // Followers first: defragmenting the leader stalls the whole cluster.
    let ordered = space.members.sorted { !$0.isLeader && $1.isLeader }
    var steps = ["etcdctl\(endpoints) compact \(revision) --physical"]
    if ordered.isEmpty || ordered.allSatisfy({ $0.endpoint.isEmpty }) {
        steps.append("etcdctl defrag --endpoints=<each member, one at a time, the leader last>")
    } else {
        for member in ordered {
            let name = member.name.isEmpty ? "" : "   # \(member.name)\(member.isLeader ? ", the leader" : ""), \(ByteSize.describe(member.dbSize))"
            steps.append("etcdctl --endpoints=\(member.endpoint) defrag\(name)")
        }
    }
    if space.alarmRaised { steps.append("etcdctl\(endpoints) alarm disarm") }
    let numbered = steps.enumerated().map { "  \($0.offset + 1). \($0.element)" }.joined(separator: "\n")
    let opening =
        space.alarmRaised
        ? "etcd's NOSPACE alarm is raised: every write fails (pachd's too) until it is cleared. Nothing is lost; the run is resumable. To clear it:"
        : "Nothing is lost, and the cluster takes writes (pachd's too). To make room (as a user with the root role):"
    // With the guard watching, etcd reaches its quota only when --etcd-quota overstates it.
    let quota =
        space.alarmRaised
        ? " Pass etcd's real --quota-backend-bytes as --etcd-quota: the run stops itself before that quota, not before NOSPACE at another."
        : ""
    let rerun =
        space.mode == .compactionAndDefragmentation
        ? "Then raise etcd's --quota-backend-bytes (and --etcd-quota) if the run needs more room than the quota gives, "
            + "and run the same command again."
        : "Then run the same command again, with --compact (as root it also defragments as it goes), or raise etcd's "
            + "--quota-backend-bytes and --etcd-quota."
    return opening + "\n" + numbered + "\n" + rerun + quota
}

/// `text` broken at spaces into lines of at most `width` characters, the first starting
/// with `first` and the others with `rest`.
func wrap(_ text: String, width: Int, first: String, rest: String) -> String {
    var lines: [String] = []
    var line = first
    var lineIsEmpty = true
    for word in text.split(separator: " ") {
        if !lineIsEmpty && line.count + 1 + word.count > width {
            lines.append(line)
            line = rest
            lineIsEmpty = true
        }
        line += (lineIsEmpty ? "" : " ") + word
        lineIsEmpty = false
    }
    lines.append(line)
    return lines.joined(separator: "\n")
}
