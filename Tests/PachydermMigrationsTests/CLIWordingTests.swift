import MigrationEngine
import Testing

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
