/// Every failure of the gateway client. The `code` says what kind of failure it is;
/// `message` says what happened and what to do about it, for a person at a terminal.
public struct EtcdError: Error, Sendable, Hashable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        fileprivate enum Base: String, Hashable, Sendable {
            case transport, timeout, httpStatus, server, decode, limitExceeded, authentication,
                permissionDenied, leaseNotFound, compacted, unavailable, invalidConfiguration,
                incompatibleServer, unsupported, noSpace, cancelled
        }
        fileprivate let base: Base
        /// No answer from any endpoint: connection refused, DNS, TLS handshake, reset.
        public static let transport = Code(base: .transport)
        /// An endpoint accepted the request but did not answer in time; the outcome of a write is unknown.
        public static let timeout = Code(base: .timeout)
        /// A non-2xx answer that is not one of etcd's JSON errors (405, 404 from a proxy, …).
        public static let httpStatus = Code(base: .httpStatus)
        /// etcd answered with an error body (`code`/`message`) not covered by a more specific code.
        public static let server = Code(base: .server)
        /// The answer could not be decoded.
        public static let decode = Code(base: .decode)
        /// A request over the request-size or txn-ops limit (client-side check or etcd's code 3/8).
        public static let limitExceeded = Code(base: .limitExceeded)
        /// Wrong user or password, or a token etcd rejects even after re-authenticating.
        public static let authentication = Code(base: .authentication)
        /// The user has no permission on a key it touched (gRPC code 7).
        public static let permissionDenied = Code(base: .permissionDenied)
        /// The lease does not exist (expired or revoked).
        public static let leaseNotFound = Code(base: .leaseNotFound)
        /// The requested revision was compacted (gRPC code 11).
        public static let compacted = Code(base: .compacted)
        /// etcd said it is unavailable (no leader, no quorum, request timed out: gRPC code 14).
        public static let unavailable = Code(base: .unavailable)
        /// Bad client configuration (no endpoints, unreadable TLS file, malformed URL).
        public static let invalidConfiguration = Code(base: .invalidConfiguration)
        /// The endpoint answered but is no etcd this client speaks to (etcd 2.x, another service).
        public static let incompatibleServer = Code(base: .incompatibleServer)
        /// This etcd's gateway lacks the call (lease time-to-live on 3.1.4); callers degrade.
        public static let unsupported = Code(base: .unsupported)
        /// etcd's space quota is exhausted (NOSPACE alarm, "database space exceeded").
        public static let noSpace = Code(base: .noSpace)
        /// The caller asked for the request to end before it completed (a stream it stopped reading).
        public static let cancelled = Code(base: .cancelled)
        public var description: String { base.rawValue }
    }

    public var code: Code
    public var message: String
    /// The endpoint that produced the error, when one did.
    public var endpoint: String?
    /// HTTP status of the answer, when there was one.
    public var httpStatus: Int?
    /// etcd's gRPC error code from the gateway's error body, when there was one.
    public var grpcCode: Int?

    public init(_ code: Code, _ message: String, endpoint: String? = nil, httpStatus: Int? = nil, grpcCode: Int? = nil) {
        self.code = code
        self.message = message
        self.endpoint = endpoint
        self.httpStatus = httpStatus
        self.grpcCode = grpcCode
    }

    public var description: String {
        var s = message
        if let endpoint { s += " (endpoint \(endpoint))" }
        return s
    }
}
