import MigrationEngine
import Testing

@testable import PachmigrateCLI

/// The CLI, not the engine, reads where it runs: the lock's holder names the pod.
@Suite("Lock holder identity from the environment")
struct HolderIdentityTests {
    @Test func thePodComesFromTheDownwardAPI() {
        let identity = HolderIdentity.fromEnvironment(["POD_NAME": "migrate-x7k", "POD_NAMESPACE": "pachyderm", "HOSTNAME": "h"])
        #expect(identity.podName == "migrate-x7k")
        #expect(identity.podNamespace == "pachyderm")
        #expect(identity.pid == HolderIdentity.thisProcess.pid)
    }

    @Test func insideKubernetesTheHostnameNamesThePod() {
        let identity = HolderIdentity.fromEnvironment(["HOSTNAME": "migrate-x7k", "KUBERNETES_SERVICE_HOST": "10.0.0.1"])
        #expect(identity.podName == "migrate-x7k")
        #expect(identity.podNamespace == nil)
    }

    @Test func outsideKubernetesNoPodIsNamed() {
        let identity = HolderIdentity.fromEnvironment(["HOSTNAME": "laptop"])
        #expect(identity.podName == nil)
        #expect(identity.podNamespace == nil)
    }
}
