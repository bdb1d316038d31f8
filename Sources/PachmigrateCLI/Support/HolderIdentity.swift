import MigrationEngine

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

extension HolderIdentity {
    /// This process, and the pod it runs in when the environment names one: `POD_NAME` and
    /// `POD_NAMESPACE` from the Job's downward API (deploy/), else `HOSTNAME` inside
    /// Kubernetes (which sets `KUBERNETES_SERVICE_HOST` in every pod), whose default is
    /// the pod's name.
    static func fromEnvironment(_ environment: [String: String] = ProcessInfo.processInfo.environment) -> HolderIdentity {
        var identity = HolderIdentity.thisProcess
        identity.podName =
            environment["POD_NAME"] ?? environment["HOSTNAME"].flatMap { environment["KUBERNETES_SERVICE_HOST"] != nil ? $0 : nil }
        identity.podNamespace = environment["POD_NAMESPACE"]
        return identity
    }
}
