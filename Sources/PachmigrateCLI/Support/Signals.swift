import EtcdGateway
import MigrationEngine
import PlatformShim

/// SIGINT, SIGTERM and SIGHUP ask the run to stop: before its first write at once, with
/// nothing written (exit 130, 143 or 129); once writing has begun after the txn in flight, resumable
/// (exit 7). Delivered by the watcher thread `Pachmigrate.runMain` starts (`TerminationSignals`);
/// `onSignal` gets the signal's number and whether the run had begun writing.
final class SignalHandlers: Sendable {
    let stop = StopSignal()

    init(onSignal: @escaping @Sendable (_ signal: Int32, _ writing: Bool) -> Void) {
        TerminationSignals.onSignal { [stop] number in
            stop.stop(signal: number)
            onSignal(number, stop.hasBegunWriting)
        }
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
