import EtcdGateway

/// Which etcd each endpoint runs, for `status` and `plan`: what the tool is talking to.
struct EtcdSummary: Encodable {
    struct Endpoint: Encodable {
        var endpoint: String
        /// The member's version (`etcdserver`), when it answered.
        var server: String?
        /// The version the cluster runs at (`etcdcluster`).
        var cluster: String?
        /// Why the version could not be learnt.
        var error: String?
    }

    var endpoints: [Endpoint]

    init(_ client: EtcdClient) {
        endpoints = client.endpointVersions().map { answer in
            switch answer.version {
            case .success(let v): Endpoint(endpoint: answer.endpoint, server: v.server.description, cluster: v.cluster)
            case .failure(let error): Endpoint(endpoint: answer.endpoint, error: error.message)
            }
        }
    }

    var text: String {
        endpoints.map { e in
            if let server = e.server {
                "etcd: \(e.endpoint) runs etcd \(server) (cluster version \(e.cluster ?? "?"))"
            } else {
                "etcd: \(e.endpoint) did not answer: \(e.error ?? "?")"
            }
        }.joined(separator: "\n")
    }
}
