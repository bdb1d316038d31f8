import ArgumentParser
import EtcdGateway
import Logging
import MigrationEngine
import PachydermMigrations

import PlatformShim

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// The lock as `status` and `lock show` word it.
extension LockInspection {
    /// While records are written, the journal's count (it moves with every txn) rather than
    /// the holder's (as of its last heartbeat); before that, the holder's step, which it
    /// publishes the moment it changes.
    private var stepLine: String {
        if let journalStep, holder.step == journalStep {
            return "  step:       \(journalStep), \(journalWritten ?? 0)/\(journalRecords ?? 0) records written (journal)"
        }
        let progress = holder.total > 0 ? " \(holder.done)/\(holder.total) (as of its last heartbeat)" : ""
        return "  step:       \(holder.step)\(progress)"
    }

    var text: String {
        let lease: String
        switch (leaseRemainingSeconds, leaseRemainingSource) {
        case (..<0, _): lease = "gone"
        case (let seconds, .etcd): lease = "\(seconds)s left (etcd's count); it expires by itself then if nobody keeps it alive"
        case (let seconds, .holderHeartbeat):
            lease =
                "about \(seconds)s left (estimated from the heartbeat: \(leaseTimeUnavailable ?? "etcd did not say")); "
                + "it expires by itself then if nobody keeps it alive"
        }
        var lines = [
            "Lock held by \(holder.who)",
            "  holder id:  \(holder.holderID)",
            "  command:    \(holder.command) (pachmigrate \(holder.toolVersion))"
                + "\(holder.from.map { " from \($0)" } ?? "")\(holder.to.map { " to \($0)" } ?? "")",
            "  started:    \(holder.startedAt)",
            stepLine,
            "  heartbeat:  \(holder.heartbeat) (\(heartbeatAgeSeconds)s ago\(stale ? ", STALE" : ""))",
            "  lease:      \(holder.leaseID), \(lease)",
        ]

        if holderProcessGone == true {
            lines.append(
                "  process:    pid \(holder.pid) no longer runs on this host: the holder is gone. "
                    + "Wait for the lease to expire, or `pachmigrate lock break`."
            )
        }
        return lines.joined(separator: "\n")
    }
}

struct StatusReport: CommandReport {
    var etcd: EtcdSummary
    /// etcd's active alarms (`NOSPACE`: every write fails until it is cleared); nil when
    /// they could not be read, with the reason in `alarmsUnavailable`.
    var alarms: [String]?
    var alarmsUnavailable: String?
    var stampedVersion: String?
    /// A restore that began writing and has not finished: the cluster is half restored.
    var restoreInProgress: RestoreInProgress?
    var state: RunState?
    var lanes: [String: LaneCursor]
    var lock: LockInspection?
    var history: [HistoryEntry]

    func renderText() -> String {
        var lines = [etcd.text]
        if let alarms {
            lines.append(
                alarms.isEmpty
                    ? "etcd alarms: none"
                    : "etcd alarms: \(alarms.joined(separator: ", ")): writes fail until they are cleared (README: \"etcd's space quota\")")
        } else {
            lines.append("etcd alarms: unknown (\(alarmsUnavailable ?? "?"))")
        }
        let never = state == nil && history.isEmpty ? " (never migrated by pachmigrate)" : ""
        lines.append("Stamped version: \(stampedVersion ?? "none\(never)")")
        if let restore = restoreInProgress {
            lines.append(
                "Restore of \(restore.backupPath) (\(restore.keys) keys, sha256 \(restore.backupSHA256)), "
                    + "begun \(restore.startedAt) by \(restore.who): not finished")
            if let lock, !lock.stale, lock.holderProcessGone != true, lock.holder.step == .restore {
                lines.append("  in progress: \(lock.holder.who) holds the lock")
            } else {
                lines.append(
                    "  stopped half way: the cluster is half restored. Run `\(restore.command)` again "
                        + "(with the flags it was first run with) to finish it; migrate refuses until then")
            }
        }
        if let state {
            lines.append("Run \(state.runID): \(state.statusName), \(state.from) → \(state.to), step \(state.step)")
            lines.append("  started \(state.startedAt) at revision \(state.startRevision), updated \(state.updatedAt)")
            if let path = state.backupPath {
                lines.append("  backup \(state.backupHost.map { "\($0):" } ?? "")\(path) sha256 \(state.backupSHA256 ?? "?")")
            }
            if let message = state.message { lines.append("  last error: \(message)") }
            if state.status == .running || state.status == .failed {
                let written = lanes.values.reduce(0) { $0 + $1.written }
                let next: String
                if let lock, !lock.stale, lock.holderProcessGone != true {
                    // A live holder: its run is going on (or about to resume); nobody else should start one.
                    next = "in progress: \(lock.holder.command) by \(lock.holder.who) holds the lock (step \(lock.holder.step))"
                } else {
                    next = "interrupted: run the same migrate command to resume"
                }
                lines.append("  progress: \(written)/\(state.records) records in \(lanes.count) lane(s); \(next)")
            }
        } else {
            lines.append("No migration recorded.")
        }
        lines.append(lock?.text ?? "Lock: free")
        if !history.isEmpty {
            lines.append("History (newest last):")
            for h in history {
                var line = "  \(h.at) \(h.event) by \(h.who)"
                if let from = h.from, let to = h.to { line += " \(from) → \(to)" }
                if let counts = h.counts { line += " " + counts.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ") }
                if let detail = h.detail { line += " (\(detail))" }
                lines.append(line)
            }
        }
        return lines.joined(separator: "\n")
    }
}

struct StatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show the stamped version, the run in progress (if any), the lock and the history.",
        discussion: """
            Examples:
              pachmigrate status --endpoints http://etcd:2379
              pachmigrate status --endpoints http://etcd:2379 --history 20 -o json

            \(ExitStatus.helpLine(Self.exitStatuses))
            """)

    static let exitStatuses: [ExitStatus] = [.ok, .failure, .usage, .stoppedBySIGHUP, .stoppedBySIGINT, .stoppedBySIGTERM]

    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var output: OutputOptions

    @Option(name: .long, help: "How many history entries to show.")
    var history = 5

    func run() throws {
        try runCommand("status", output, connection: connection) { context in
            let client = try connection.makeClient(logger: context.logger)
            let journal = JournalReader(store: client, namespace: connection.namespace)
            // The one read status cannot do without comes first: an etcd that does not answer
            // fails it after one request timeout, not after the best-effort reads' too.
            let stampedVersion = try journal.stampedVersion()
            let restoreInProgress = try journal.restoreInProgress()
            var alarms: [String]?
            var alarmsUnavailable: String?
            switch Result(catching: { () throws(EtcdError) in try client.alarms() }) {
            case .success(let active): alarms = active.map { "\($0.kind.rawValue) on member \(String($0.memberID, radix: 16))" }
            case .failure(let error): alarmsUnavailable = error.message
            }
            // Shown by the lanes' names, as their cursor keys spell them.
            let lanes = Dictionary(uniqueKeysWithValues: try journal.laneCursors().map { ($0.key.name, $0.value) })
            return StatusReport(
                etcd: EtcdSummary(client), alarms: alarms, alarmsUnavailable: alarmsUnavailable, stampedVersion: stampedVersion,
                restoreInProgress: restoreInProgress, state: try journal.state(), lanes: lanes,
                lock: try LockInspection.read(store: client, namespace: connection.namespace), history: try journal.history(limit: history))
        }
    }
}

struct LockCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lock",
        abstract: "Inspect or break the migration lock.",
        discussion: """
            Examples:
              pachmigrate lock show --endpoints http://etcd:2379
              pachmigrate lock break --endpoints http://etcd:2379 --by alice
            """,
        subcommands: [LockShowCommand.self, LockBreakCommand.self])
}

struct LockReport: CommandReport {
    var lock: LockInspection?
    var broken: Bool?
    var message: String?

    /// `held` always, so that a free lock is `{"held": false}` rather than an empty object.
    enum CodingKeys: String, CodingKey { case held, lock, broken, message }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(lock != nil, forKey: .held)
        try container.encodeIfPresent(lock, forKey: .lock)
        try container.encodeIfPresent(broken, forKey: .broken)
        try container.encodeIfPresent(message, forKey: .message)
    }

    func renderText() -> String {
        [lock?.text ?? "Lock: free", message].compactMap { $0 }.joined(separator: "\n")
    }
}

struct LockShowCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "show", abstract: "Show who holds the lock and how fresh its heartbeat is.",
        discussion: """
            Examples:
              pachmigrate lock show --endpoints http://etcd:2379
              pachmigrate lock show --endpoints http://etcd:2379 -w json

            \(ExitStatus.helpLine(Self.exitStatuses))
            """)

    static let exitStatuses: [ExitStatus] = [.ok, .failure, .usage, .stoppedBySIGHUP, .stoppedBySIGINT, .stoppedBySIGTERM]

    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var output: OutputOptions

    func run() throws {
        try runCommand("lock show", output, connection: connection) { context in
            let client = try connection.makeClient(logger: context.logger)
            return LockReport(lock: try LockInspection.read(store: client, namespace: connection.namespace))
        }
    }
}

struct LockBreakCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "break",
        abstract: "Break a stuck lock: revoke its holder's lease and record who broke it.",
        discussion: """
            Refuses while the holder's heartbeat is fresh (younger than --stale-after, default \
            twice its lease TTL and at least 60 s), because a live migrator would then lose its \
            lock mid-run; --force breaks it anyway. The broken run's writes stop at once (they \
            are fenced on the lock). Afterwards run the same migrate command to resume, or restore.

            Examples:
              pachmigrate lock break --endpoints http://etcd:2379 --by alice
              pachmigrate lock break --endpoints http://etcd:2379 --stale-after 2m

            \(ExitStatus.helpLine(Self.exitStatuses))
            """)

    static let exitStatuses: [ExitStatus] = [.ok, .failure, .usage, .lockHeld]

    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var output: OutputOptions

    @Flag(name: .long, help: "Break even a lock whose heartbeat is fresh.")
    var force = false

    @Option(name: .long, help: ArgumentHelp("Heartbeat age after which the lock counts as stale.", valueName: "duration"))
    var staleAfter: DurationArgument?

    @Option(name: .long, help: ArgumentHelp("Who is breaking it, for the history (default: $USER@host).", valueName: "name"))
    var by: String?

    func run() throws {
        try runCommand("lock break", output, connection: connection) { context in
            let client = try connection.makeClient(logger: context.logger)
            let namespace = connection.namespace
            guard let view = try LockInspection.read(store: client, namespace: namespace, staleAfter: staleAfter?.seconds) else {
                return LockReport(lock: nil, broken: false, message: "Nothing to break: the lock is free.")
            }
            if !view.stale && !force {
                throw CLIError(
                    .lockHeld,
                    "refusing to break the lock: its holder \(view.holder.who) sent a heartbeat \(view.heartbeatAgeSeconds)s ago "
                        + "and may still be running. Stop it first, wait until the heartbeat is stale, or pass --force."
                )
            }
            let env = ProcessInfo.processInfo.environment
            let who = by ?? "\(env["USER"] ?? "unknown")@\(ProcessInfo.processInfo.hostName)"
            try MigrationLock.breakLock(
                store: client, namespace: namespace, held: view.record, holder: view.holder, by: who,
                detail:
                    "broke the lock of \(view.holder.who) (holder \(view.holder.holderID), "
                    + "heartbeat \(view.heartbeatAgeSeconds)s old\(force ? ", forced" : ""))",
                logger: context.logger)
            return LockReport(
                lock: view, broken: true,
                message: "Lock broken by \(who). Run the interrupted command again to resume, or `pachmigrate restore` its backup.")
        }
    }
}

/// Why the cluster is not ready yet, for the log and the timeout message.
private func reason(_ look: Result<Readiness, MigrationError>) -> String {
    switch look {
    case .success(.ready): "ready"
    case .success(.stampedOther(let stamped)): "stamped \(stamped ?? "nothing")"
    case .success(.runUnfinished(let status)): "a migration is \(status.rawValue)"
    case .success(.locked(let holder)): "the migration lock is held by \(holder.who)"
    case .failure(let error): "etcd: \(error)"
    }
}

struct WaitReport: CommandReport {
    var version: String
    var waitedSeconds: Int
    func renderText() -> String { "The cluster is at \(version), with no migration running (waited \(waitedSeconds)s)." }
}

struct WaitCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "wait",
        abstract: "Block until the cluster is stamped with a version, unlocked, with no run in progress.",
        discussion: """
            For an init container of the new pachd: it starts only once the migration is done. \
            Exits 0 when ready, 1 when --timeout passes first.

            Examples:
              pachmigrate wait --endpoints http://etcd:2379 --version 1.5.0
              pachmigrate wait --version 1.5.0 --timeout 10m --interval 5s

            \(ExitStatus.helpLine(Self.exitStatuses))
            """)

    static let exitStatuses: [ExitStatus] = [.ok, .failure, .usage, .unsupportedVersion, .stoppedBySIGHUP, .stoppedBySIGINT, .stoppedBySIGTERM]

    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var output: OutputOptions

    @Option(name: .long, help: ArgumentHelp("The version to wait for, e.g. 1.5.0.", valueName: "version"))
    var version: String

    @Option(name: .long, help: ArgumentHelp("Give up after this long (e.g. 10m); default: wait forever.", valueName: "duration"))
    var timeout: DurationArgument?

    @Option(name: .long, help: ArgumentHelp("How often to look.", valueName: "duration"))
    var interval = DurationArgument(.seconds(2))

    func run() throws {
        try runCommand("wait", output, connection: connection) { context in
            // A 1.5.1 pachd reads what a migration to 1.5.0 stamped: one format per minor release.
            let accepted = try VersionStepRegistry.stampsReadable(by: version)
            let client = try connection.makeClient(logger: context.logger)
            let journal = JournalReader(store: client, namespace: connection.namespace)
            let wait = journal.waitUntilReady(
                for: accepted, timeout: timeout?.duration, interval: min(interval.duration, .seconds(60))
            ) { context.logger.notice("waiting: \(reason($0))") }
            guard wait.isReady else {
                throw CLIError(
                    .failure,
                    "timed out after \(DurationArgument.describe(timeout?.duration ?? wait.waited)) waiting for version \(version): "
                        + reason(wait.last))
            }
            return WaitReport(version: version, waitedSeconds: Int(wait.waited.components.seconds))
        }
    }
}
