import Dispatch
import MigrationEngine

import PlatformShim

/// SIGTERM and SIGINT ask the run to stop after the record in flight; the engine then
/// records its state, revokes the lease and the command exits 7 (resumable).
final class SignalHandlers: Sendable {
    let stop = StopSignal()
    nonisolated(unsafe) private var sources: [DispatchSourceSignal] = []

    init(onSignal: @escaping @Sendable (Int32) -> Void) {
        for number in [SIGTERM, SIGINT] {
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler { [stop] in
                stop.stop()
                onSignal(number)
            }
            source.resume()
            sources.append(source)
        }
    }
}
