import EtcdGateway
import MigrationEngine
import PlatformShim
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// SIGINT, SIGTERM and SIGHUP ask the run to stop: before its first write at once, with
/// nothing written (exit 130, 143 or 129); once writing has begun after the txn in flight, resumable
/// (exit 7). Delivered by the watcher thread `Pachmigrate.runMain` starts (`TerminationSignals`);
/// `onSignal` gets the signal's number and whether the run had begun writing.
///
/// A second signal quits at once, as the process's end at any instant is safe to resume:
/// the operator who pressed Ctrl-C while etcd does not answer need not wait out the request
/// timeout and the lock's release. `quit` says, from the run's stop (writing yet, holding
/// the lock), what that leaves (the txn in flight unknown, the lock held until its lease
/// runs out) and with which exit status.
final class SignalHandlers: Sendable {
    let stop = StopSignal()
    private let received = Atomic<Int>(0)

    init(
        quit: @escaping @Sendable (_ signal: Int32, _ stop: StopSignal) -> (status: ExitStatus, message: String),
        onSignal: @escaping @Sendable (_ signal: Int32, _ writing: Bool) -> Void
    ) {
        TerminationSignals.onSignal { [self] number in
            guard received.add(1, ordering: .relaxed).newValue == 1 else {
                let (status, message) = quit(number, stop)
                Pachmigrate.exit(status, code: "quitAtOnce", message: message)
            }
            stop.stop(signal: number)
            onSignal(number, stop.hasBegunWriting)
        }
    }

    /// What the first notice adds: how to quit at once.
    static func quitHint(_ signal: Int32) -> String {
        signal == SIGINT ? "press Ctrl-C again to quit at once" : "a second \(signalName(signal)) quits at once"
    }

    /// The lock a quit leaves behind: held until its lease runs out, if the run had taken it.
    static func lockLeft(by stop: StopSignal, ttl: Int64) -> String {
        stop.holdsLock
            ? "the lock stays held until its lease runs out, within \(ttl) s: run it with --wait-lock 1m to wait for that"
            : "no lock is left held"
    }
}

extension SignalHandlers {
    /// Saves etcd's snapshot to `path`; a signal ends it at the next piece of the stream, the
    /// unfinished file deleted, and throws `.stoppedBeforeWriting` (exit 130 or 143).
    func saveSnapshot(_ client: EtcdClient, to path: String) throws -> Int64 {
        let stop = self.stop
        do {
            return try client.snapshot(toFile: path, cancelled: { stop.isStopped })
        } catch {
            if error.code == .cancelled {
                try stop.checkBeforeWriting("etcd's snapshot (the unfinished file \(path) was deleted)")
            }
            throw error
        }
    }
}
