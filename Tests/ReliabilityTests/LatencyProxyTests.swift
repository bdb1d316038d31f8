import EtcdGateway
import EtcdTestSupport
import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// `pachmigrate-bench proxy`, which puts the bench's network between pachmigrate and etcd:
/// a figure measured through it means something only if every round trip through it really
/// pays the RTT it was given, and not much more. The bounds are loose (a loaded CI machine
/// once took 37 ms a request through a 20 ms proxy, etcd included),
/// the RTT large beside them; how fast anything is belongs in the bench.
@Suite("the bench's latency proxy")
struct LatencyProxyTests {
    static let bench = URL(fileURLWithPath: pachmigrateBinary).deletingLastPathComponent().appendingPathComponent("pachmigrate-bench").path

    @Test func everyRequestThroughItTakesTheRoundTripAndNotMuchMore() async throws {
        try await onOwnThread {
            let server = try EtcdServer.shared()
            let rttMilliseconds = 50
            let work = FileManager.default.temporaryDirectory.appendingPathComponent("latency-proxy-\(UUID().uuidString)").path
            try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(atPath: work) }
            let portFile = work + "/port"

            let proxy = Process()
            proxy.executableURL = URL(fileURLWithPath: Self.bench)
            proxy.arguments = [
                "proxy", "--target", String(server.endpoint.dropFirst("http://".count)), "--rtt", "\(rttMilliseconds)",
                "--port-file", portFile,
            ]
            proxy.standardOutput = FileHandle.nullDevice
            proxy.standardInput = FileHandle.nullDevice
            try spawnChild(proxy)
            defer {
                if proxy.isRunning { kill(proxy.processIdentifier, SIGKILL) }
            }
            // The port file appears whole (written, then renamed) once the proxy listens.
            #expect(eventually(timeout: 20) { FileManager.default.fileExists(atPath: portFile) || !proxy.isRunning })
            let port = try #require(
                Int((try String(contentsOfFile: portFile, encoding: .utf8)).trimmingCharacters(in: .whitespacesAndNewlines)))

            let client = try EtcdClient(
                configuration: .init(endpoints: ["http://127.0.0.1:\(port)"], requestTimeout: .seconds(10)), logger: testLogger)
            let key = bytes(uniquePrefix("latency-proxy") + "k")
            try client.put(PutRequest(key: key, value: bytes("v")))  // connects: later requests reuse the connection
            let direct = try server.makeClient()
            _ = try direct.range(RangeRequest(key: key))  // connects
            let clock = ContinuousClock()
            let timed = { (client: EtcdClient) throws -> Double in
                let started = clock.now
                _ = try client.range(RangeRequest(key: key))
                let elapsed = clock.now - started
                return Double(elapsed.components.seconds) * 1000 + Double(elapsed.components.attoseconds) / 1e15
            }
            // The same read straight to etcd beside each one through the proxy: what etcd itself
            // takes on a loaded machine is not the proxy's doing.
            var milliseconds: [Double] = []
            var directMilliseconds: [Double] = []
            for _ in 0..<7 {
                directMilliseconds.append(try timed(direct))
                milliseconds.append(try timed(client))
            }
            let rtt = Double(rttMilliseconds)
            // Half the RTT on the way there, half on the way back: never less.
            for taken in milliseconds { #expect(taken >= rtt, "a request took \(taken) ms through a \(rtt) ms proxy") }
            let median = milliseconds.sorted()[milliseconds.count / 2]
            let directMedian = directMilliseconds.sorted()[directMilliseconds.count / 2]
            #expect(
                median < directMedian + rtt + 25,
                "median \(median) ms through a \(rtt) ms proxy, \(directMedian) ms straight: \(milliseconds), \(directMilliseconds)")

            // Latency, not a queue: eight connections' requests at once each pay about one
            // RTT, where a proxy that handled them one after another would take eight. The
            // bound sits between the two: on a loaded CI machine the eight took just over 3 RTTs.
            let clients = try (0..<8).map { _ in
                let c = try EtcdClient(
                    configuration: .init(endpoints: ["http://127.0.0.1:\(port)"], requestTimeout: .seconds(10)), logger: testLogger)
                _ = try c.range(RangeRequest(key: key))  // connects
                return c
            }
            let started = clock.now
            // A thread each (concurrentPerform would run only as many at once as there are cores).
            let group = DispatchGroup()
            for client in clients {
                group.enter()
                Thread.detachNewThread {
                    _ = try? client.range(RangeRequest(key: key))
                    group.leave()
                }
            }
            group.wait()
            let together = clock.now - started
            #expect(together < .milliseconds(5 * rttMilliseconds), "8 requests at once took \(together) through a \(rtt) ms proxy")

            // SIGTERM ends it cleanly, open connections and all.
            kill(proxy.processIdentifier, SIGTERM)
            #expect(waitForExit(proxy, seconds: 10))
            #expect(!proxy.isRunning && proxy.terminationStatus == 0)
        }
    }
}
