import EtcdGateway

/// Every failure of the migration engine. `code` decides the process exit code (the CLI
/// maps it); `message` tells the operator what happened and what to do next; `keys` names
/// every key involved.
public struct MigrationError: Error, Sendable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        fileprivate enum Base: String, Hashable, Sendable {
            case lockHeld, notAtRest, foreignWrite, leaseLost, conversionFailed, unsupportedVersion,
                verificationFailed, interrupted, stoppedBeforeWriting, backupFailed, restoreFailed, restoreRefused, store, invalidState,
                outOfSpace, restoreUnfinished
        }
        fileprivate let base: Base
        /// Another migrator (or a stale one) holds the lock.
        public static let lockHeld = Code(base: .lockHeld)
        /// Jobs run, commits are open or put-files are in flight.
        public static let notAtRest = Code(base: .notAtRest)
        /// Someone else wrote to the managed keys during the run.
        public static let foreignWrite = Code(base: .foreignWrite)
        /// The lock's lease was lost; nothing more was written. Re-run to resume.
        public static let leaseLost = Code(base: .leaseLost)
        /// At least one record could not be converted; `keys` names them.
        public static let conversionFailed = Code(base: .conversionFailed)
        /// No migration path between the versions, or the cluster is stamped with an unknown version.
        public static let unsupportedVersion = Code(base: .unsupportedVersion)
        /// `verify` found problems.
        public static let verificationFailed = Code(base: .verificationFailed)
        /// Stopped by a signal after persisting its state. Re-run to resume.
        public static let interrupted = Code(base: .interrupted)
        /// Stopped on request (a signal) before the run's first write: every record is as it
        /// was, no lock is left behind and no backup file that could pass for complete.
        public static let stoppedBeforeWriting = Code(base: .stoppedBeforeWriting)
        /// The backup could not be written; nothing was written to etcd.
        public static let backupFailed = Code(base: .backupFailed)
        /// The backup to restore is unreadable, corrupt, or the restore was refused.
        public static let restoreFailed = Code(base: .restoreFailed)
        /// `restore` would replace another cluster's keys, or throw away writes made after the
        /// backup by someone else; refused before any write until a flag says it is intended.
        public static let restoreRefused = Code(base: .restoreRefused)
        /// A restore began writing and did not finish: the cluster is half restored, and no
        /// migration runs on it until the restore is run again (or is abandoned by a flag).
        public static let restoreUnfinished = Code(base: .restoreUnfinished)
        /// etcd failed (unreachable, auth, permission, limits); see `underlying`.
        public static let store = Code(base: .store)
        /// The journal in etcd is not one this tool can continue from.
        public static let invalidState = Code(base: .invalidState)
        /// etcd would run out of space (refused before any write), the space guard stopped the
        /// run before etcd's quota, or etcd ran out (NOSPACE mid-run); resumable once there is
        /// room; `space` says what to do.
        public static let outOfSpace = Code(base: .outOfSpace)
        public var description: String { base.rawValue }
    }

    /// A key the error names, and what about it when there is more to say than the message.
    public struct InvolvedKey: Sendable, Hashable, CustomStringConvertible {
        public enum Reason: Sendable, Hashable {
            /// The record cannot be converted (`error.key` is the key).
            case conversion(RecordConversionError)
            /// The record keeps the cluster from being at rest (`finding.key` is the key).
            case finding(AtRestFinding)
            /// Someone else changed the key at this revision.
            case changed(atRevision: Int64)
        }
        /// Printable (`[UInt8].printable`).
        public var key: String
        public var reason: Reason?

        public init(_ key: String, _ reason: Reason? = nil) {
            self.key = key
            self.reason = reason
        }
        public static func conversion(_ error: RecordConversionError) -> InvolvedKey { InvolvedKey(error.key, .conversion(error)) }
        public static func finding(_ finding: AtRestFinding) -> InvolvedKey { InvolvedKey(finding.key, .finding(finding)) }

        /// One line of an error's list of keys.
        public var description: String {
            switch reason {
            case nil: key
            case .conversion(let error): error.description
            case .finding(let finding): "\(key): \(finding.kind): \(finding.detail)"
            case .changed(let revision): "\(key) (revision \(revision))"
            }
        }
    }

    public var code: Code
    public var message: String
    public var keys: [InvolvedKey]
    public var underlying: EtcdError?
    /// With `.outOfSpace`: the numbers and the revision to compact to.
    public var space: OutOfSpace?
    /// With `.stoppedBeforeWriting` and `.interrupted`: the signal that asked for the stop.
    public var signal: Int32?
    /// With `.lockHeld`: the lock as `lock show` would judge it (a holder gone from this host,
    /// its lease's time left), from which the caller words the way forward; nil when it
    /// could not be read again.
    public var heldLock: LockInspection?
    /// Set when the run ended holding the lock and could not release it (etcd did not answer
    /// the revoke): the lease's TTL in seconds, within which etcd frees the lock by itself.
    public var lockLeftHeldSeconds: Int64?
    /// With `.restoreRefused`: what the restore found, from which the caller words the refusal
    /// (the setting that overrides each reason is the caller's to name).
    public var refusedRestore: RestorePlan?

    public init(_ code: Code, _ message: String, keys: [InvolvedKey] = [], underlying: EtcdError? = nil) {
        self.code = code
        self.message = message
        self.keys = keys
        self.underlying = underlying
    }

    /// Naming keys with nothing more to say about each than the message does.
    public init(_ code: Code, _ message: String, keys: [String], underlying: EtcdError? = nil) {
        self.init(code, message, keys: keys.map { InvolvedKey($0) }, underlying: underlying)
    }

    public static func store(_ error: EtcdError, while doing: String) -> MigrationError {
        if error.code == .noSpace {
            var outOfSpace = MigrationError(
                .outOfSpace, "etcd ran out of space while \(doing) and raised its NOSPACE alarm; everything written so far is recorded",
                underlying: error)
            outOfSpace.space = OutOfSpace(alarmRaised: true)
            return outOfSpace
        }
        return MigrationError(.store, "etcd failed while \(doing): \(error)", underlying: error)
    }

    public var description: String {
        guard !keys.isEmpty else { return message }
        return message + "\n" + keys.map { "  - \($0)" }.joined(separator: "\n")
    }
}

/// What an operator needs to make room in etcd.
public struct OutOfSpace: Sendable, Hashable {
    /// The preflight that refused the run (nil when the run stopped part way).
    public var estimate: SpaceEstimate?
    /// The revision to compact history up to: the cluster's when the run stopped.
    public var compactTo: Int64?
    /// Every member's backend when the run stopped, to defragment one at a time (the leader last).
    public var members: [MemberStatus]
    /// etcd raised its NOSPACE alarm (writes fail for everyone until it is disarmed).
    public var alarmRaised: Bool
    /// The run's space guard stopped it before etcd's quota: no alarm, the cluster writable.
    public var guardStopped: Bool
    /// How the run was keeping under the quota when it stopped.
    public var mode: SpaceMode?

    public init(
        estimate: SpaceEstimate? = nil, compactTo: Int64? = nil, members: [MemberStatus] = [], alarmRaised: Bool = false,
        guardStopped: Bool = false, mode: SpaceMode? = nil
    ) {
        self.estimate = estimate
        self.compactTo = compactTo
        self.members = members
        self.alarmRaised = alarmRaised
        self.guardStopped = guardStopped
        self.mode = mode
    }
}

extension MigrationError.Code {
    /// The code whose `description` is `text`, as the journal records it (`RunState.failureCode`).
    init?(recorded text: String) {
        guard let base = Base(rawValue: text) else { return nil }
        self.init(base: base)
    }
}

/// Runs an etcd call, turning its error into a `MigrationError` that says what we were doing.
@inline(__always)
public func etcd<T>(_ doing: @autoclosure () -> String, _ body: () throws(EtcdError) -> T) throws(MigrationError) -> T {
    do {
        return try body()
    } catch {
        throw MigrationError.store(error, while: doing())
    }
}
