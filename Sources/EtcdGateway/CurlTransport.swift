// A thin synchronous HTTP/1.1 POST (and GET) over libcurl's easy interface. One `CurlHandle` serves
// one request at a time; `CurlHandlePool` hands each concurrent caller its own handle and
// keeps idle handles (and their open connections) for reuse.

import CCurlShims
import Synchronization

import PlatformShim

/// `curl_global_init` must run once per process before any other libcurl call; a lazily
/// initialised global is guaranteed by Swift to run exactly once, thread-safely.
let curlGlobalInitResult: CURLcode = pm_curl_global_init()

/// Receives response bytes from libcurl's write callback.
final class ResponseSink {
    var body: [UInt8] = []
    /// When set, bytes go here instead of `body`; returning false aborts the transfer.
    var consumer: ((UnsafeRawBufferPointer) -> Bool)?

    init(consumer: ((UnsafeRawBufferPointer) -> Bool)? = nil) {
        self.consumer = consumer
    }
}

private let writeCallback: pm_curl_data_callback = { data, size, count, userdata in
    let length = size * count
    guard let userdata else { return 0 }
    let sink = Unmanaged<ResponseSink>.fromOpaque(userdata).takeUnretainedValue()
    let buffer = UnsafeRawBufferPointer(start: data, count: length)
    if let consumer = sink.consumer {
        // A short count makes libcurl abort with CURLE_WRITE_ERROR.
        return consumer(buffer) ? length : 0
    }
    sink.body.append(contentsOf: buffer)
    return length
}

/// What a transfer produced when libcurl completed it (any HTTP status).
struct HTTPResult {
    var status: Int
    var body: [UInt8]
}

/// Why a transfer did not complete.
struct TransferFailure: Error {
    var curlCode: CURLcode
    var detail: String
    /// True when the request never reached the server (no connection, TLS failure),
    /// so it is safe to try another endpoint.
    var requestNotSent: Bool
    /// Whether a connection was made: a timeout with one is a server that does not answer,
    /// without one a host that does not accept (different advice, different timeouts).
    var connected = false
}

struct TLSFiles: Sendable {
    var caFile: String?
    var certFile: String?
    var keyFile: String?
    var insecureSkipVerify = false
}

final class CurlHandle {
    private let handle: UnsafeMutableRawPointer
    private let errorBuffer: UnsafeMutablePointer<CChar>

    init?(connectTimeoutMilliseconds: Int, tls: TLSFiles?) {
        _ = curlGlobalInitResult
        guard let handle = curl_easy_init() else { return nil }
        self.handle = handle
        errorBuffer = .allocate(capacity: Int(CURL_ERROR_SIZE) + 1)
        errorBuffer.initialize(repeating: 0, count: Int(CURL_ERROR_SIZE) + 1)
        // Signals are process-wide; libcurl must not use them in a multi-threaded program.
        _ = pm_curl_setopt_long(handle, CURLOPT_NOSIGNAL, 1)
        // The gateway does not speak HTTP/2 with prior knowledge.
        _ = pm_curl_setopt_long(handle, CURLOPT_HTTP_VERSION, CURL_HTTP_VERSION_1_1)
        _ = pm_curl_setopt_long(handle, CURLOPT_TCP_KEEPALIVE, 1)
        _ = pm_curl_setopt_long(handle, CURLOPT_TCP_KEEPIDLE, 30)
        _ = pm_curl_setopt_long(handle, CURLOPT_TCP_KEEPINTVL, 10)
        _ = pm_curl_setopt_long(handle, CURLOPT_TCP_NODELAY, 1)
        _ = pm_curl_setopt_long(handle, CURLOPT_CONNECTTIMEOUT_MS, connectTimeoutMilliseconds)
        _ = pm_curl_setopt_pointer(handle, CURLOPT_ERRORBUFFER, errorBuffer)
        _ = pm_curl_setopt_write_callback(handle, writeCallback)
        if let tls {
            if let ca = tls.caFile { _ = pm_curl_setopt_string(handle, CURLOPT_CAINFO, ca) }
            if let cert = tls.certFile { _ = pm_curl_setopt_string(handle, CURLOPT_SSLCERT, cert) }
            if let key = tls.keyFile { _ = pm_curl_setopt_string(handle, CURLOPT_SSLKEY, key) }
            if tls.insecureSkipVerify {
                // Both: the chain (VERIFYPEER) and the name in it (VERIFYHOST), as etcdctl's flag does.
                _ = pm_curl_setopt_long(handle, CURLOPT_SSL_VERIFYPEER, 0)
                _ = pm_curl_setopt_long(handle, CURLOPT_SSL_VERIFYHOST, 0)
            }
        }
    }

    deinit {
        curl_easy_cleanup(handle)
        errorBuffer.deallocate()
    }

    /// POSTs `body` to `url`, or GETs it when `body` is nil. `timeoutMilliseconds == 0`
    /// disables the overall timeout; then a stall of `stallSeconds` without progress aborts
    /// the transfer instead.
    func perform(
        url: String, body: [UInt8]?, headers: [String], timeoutMilliseconds: Int, stallSeconds: Int,
        sink: ResponseSink
    ) -> Result<HTTPResult, TransferFailure> {
        var headerList: UnsafeMutablePointer<curl_slist>? = nil
        // "Expect:" stops libcurl from waiting for a 100-continue on bodies over 1 KiB.
        for header in ["Content-Type: application/json", "Expect:"] + headers {
            headerList = curl_slist_append(headerList, header)
        }
        defer { curl_slist_free_all(headerList) }
        errorBuffer[0] = 0

        _ = pm_curl_setopt_string(handle, CURLOPT_URL, url)
        if body == nil { _ = pm_curl_setopt_long(handle, CURLOPT_HTTPGET, 1) } else { _ = pm_curl_setopt_long(handle, CURLOPT_POST, 1) }
        _ = pm_curl_setopt_slist(handle, CURLOPT_HTTPHEADER, headerList)
        _ = pm_curl_setopt_long(handle, CURLOPT_TIMEOUT_MS, timeoutMilliseconds)
        _ = pm_curl_setopt_long(handle, CURLOPT_LOW_SPEED_LIMIT, timeoutMilliseconds == 0 ? 1 : 0)
        _ = pm_curl_setopt_long(handle, CURLOPT_LOW_SPEED_TIME, timeoutMilliseconds == 0 ? stallSeconds : 0)
        let sinkPointer = Unmanaged.passUnretained(sink).toOpaque()
        _ = pm_curl_setopt_pointer(handle, CURLOPT_WRITEDATA, sinkPointer)

        let code: CURLcode = withExtendedLifetime(sink) {
            guard let body else { return curl_easy_perform(handle) }
            return body.withUnsafeBytes { raw in
                _ = pm_curl_setopt_off_t(handle, CURLOPT_POSTFIELDSIZE_LARGE, curl_off_t(raw.count))
                _ = pm_curl_setopt_pointer(
                    handle, CURLOPT_POSTFIELDS, UnsafeMutableRawPointer(mutating: raw.baseAddress))
                let result = curl_easy_perform(handle)
                // The body buffer dies after this closure; libcurl must not keep a pointer to it.
                _ = pm_curl_setopt_pointer(handle, CURLOPT_POSTFIELDS, nil)
                return result
            }
        }
        _ = pm_curl_setopt_pointer(handle, CURLOPT_WRITEDATA, nil)
        _ = pm_curl_setopt_slist(handle, CURLOPT_HTTPHEADER, nil)

        guard code == CURLE_OK else {
            var preTransferMicroseconds: curl_off_t = 0
            _ = pm_curl_getinfo_off_t(handle, CURLINFO_PRETRANSFER_TIME_T, &preTransferMicroseconds)
            var connectMicroseconds: curl_off_t = 0
            _ = pm_curl_getinfo_off_t(handle, CURLINFO_CONNECT_TIME_T, &connectMicroseconds)
            let curlText = String(cString: curl_easy_strerror(code))
            let bufferText = String(cString: errorBuffer)
            // libcurl's buffer often ends with its code's text already: say it once.
            let detail =
                bufferText.isEmpty ? curlText : bufferText.contains(curlText) ? bufferText : "\(curlText): \(bufferText)"
            let notSent =
                preTransferMicroseconds == 0 || code == CURLE_COULDNT_CONNECT
                || code == CURLE_COULDNT_RESOLVE_HOST
            return .failure(TransferFailure(curlCode: code, detail: detail, requestNotSent: notSent, connected: connectMicroseconds > 0))
        }
        var status = 0
        _ = pm_curl_getinfo_long(handle, CURLINFO_RESPONSE_CODE, &status)
        return .success(HTTPResult(status: status, body: sink.body))
    }
}

// Each handle is used by one thread at a time: the pool hands it out exclusively.
extension CurlHandle: @unchecked Sendable {}

final class CurlHandlePool: Sendable {
    private let idle = Mutex<[CurlHandle]>([])
    private let maxIdle: Int
    private let connectTimeoutMilliseconds: Int
    private let tls: TLSFiles?

    init(maxIdle: Int, connectTimeoutMilliseconds: Int, tls: TLSFiles?) {
        self.maxIdle = maxIdle
        self.connectTimeoutMilliseconds = connectTimeoutMilliseconds
        self.tls = tls
    }

    func withHandle<T>(_ body: (CurlHandle) -> T) -> T? {
        let reused = idle.withLock { $0.popLast() }
        guard let handle = reused ?? CurlHandle(connectTimeoutMilliseconds: connectTimeoutMilliseconds, tls: tls)
        else { return nil }
        let result = body(handle)
        idle.withLock { handles in
            if handles.count < maxIdle { handles.append(handle) }
        }
        return result
    }
}
