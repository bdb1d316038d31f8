import MigrationEngine

import PlatformShim

/// SIGTERM and SIGINT ask the run to stop after the record in flight; the engine then
/// records its state, revokes the lease and the command exits 7 (resumable). Delivered by
/// the watcher thread `Pachmigrate.runMain` starts (`TerminationSignals`).
final class SignalHandlers: Sendable {
    let stop = StopSignal()

    init(onSignal: @escaping @Sendable (Int32) -> Void) {
        TerminationSignals.onSignal { [stop] number in
            stop.stop()
            onSignal(number)
        }
    }
}
