import EtcdModel
import Testing

@testable import MigrationEngine
@testable import PachmigrateCLI

/// The engine's refusals carry codes and keys; the CLI adds what pachmigrate's operator
/// does next (flags, pachd, subcommands), once.
@Suite("CLI wording of engine errors")
struct CLIWordingTests {
    @Test func notAtRestGetsPachydermsRemedy() {
        let described = describe(MigrationError(.notAtRest, "the cluster is not at rest; nothing was written", keys: ["k: running-job: x"]))
        #expect(described.status == .notAtRest && described.kind == "notAtRest")
        #expect(described.message.hasPrefix("the cluster is not at rest; nothing was written. Quiesce the cluster in this order"))
        // The runbook's order: pipelines and jobs first, pachd last (it finishes jobs and commits).
        let order = ["stop-pipeline", "list-job", "finish-commit", "put-file", "--replicas=0"].map {
            described.message.range(of: $0)?.lowerBound
        }
        #expect(order.allSatisfy { $0 != nil } && order.compactMap { $0 } == order.compactMap { $0 }.sorted())
        #expect(described.message.contains("--allow-open-commits"))
        #expect(described.keys == ["k: running-job: x"])
    }

    @Test func lockHeldGetsTheLockCommands() {
        let described = describe(MigrationError(.lockHeld, "the migration lock is held by someone."))
        #expect(described.status == .lockHeld)
        #expect(
            described.message
                == "the migration lock is held by someone. "
                + "Wait for it (--wait-lock), or if it is stuck, see `pachmigrate lock show` and `pachmigrate lock break`."
        )
    }

    /// A holder that died on this host (a closed terminal, a kill) is said to be gone, with
    /// when its lock frees itself and the two ways past it, instead of "wait for it".
    @Test(arguments: [true, false])
    func lockHeldByAHolderGoneFromThisHostSaysWhenItFrees(gone: Bool) {
        var holder = LockHolder.current(command: "pachmigrate migrate", toolVersion: "t", from: "1.4.8", to: "1.5.0")
        holder.pid = 4242
        var error = MigrationError(.lockHeld, "the migration lock is held by someone.")
        error.heldLock = LockInspection(
            holder: holder, heartbeatAgeSeconds: 3, leaseRemainingSeconds: 27, leaseRemainingSource: .etcd, stale: gone,
            holderProcessGone: gone, record: KeyValue(key: Array("pachmigrate/lock".utf8), value: []))
        let message = describe(error).message
        #expect(
            (message
                == "the migration lock is held by someone. pid 4242 no longer runs on this host: that run ended without releasing "
                + "the lock (killed, quit at once, or its terminal closed), and etcd frees the lock when its lease runs out, within 27 s. Run the "
                + "same command again then (with --wait-lock 1m it waits for that), or free the lock now with `pachmigrate lock break`.")
                == gone, "\(message)")
        #expect(message.contains("Wait for it (--wait-lock)") == !gone, "\(message)")
    }

    @Test(arguments: [
        (
            MigrationError.Code.foreignWrite,
            "Stop whatever writes to the cluster (pachd, its pipelines and workers) before running pachmigrate again."
        ),
        (
            .backupFailed,
            "The backup's directory must exist and be writable, with room for the backup, and nothing else at its path; "
                + "fix that or choose another --backup path, then run again."
        ),
    ])
    func writersAndBackupsGetTheirRemedies(code: MigrationError.Code, remedy: String) {
        #expect(describe(MigrationError(code, "the engine's sentence.")).message == "the engine's sentence. " + remedy)
    }

    @Test(arguments: [MigrationError.Code.conversionFailed, .interrupted])
    func otherCodesAreLeftAsTheEngineSaidThem(code: MigrationError.Code) {
        #expect(describe(MigrationError(code, "as said")).message == "as said")
    }
}
