// TEMPORARY stub until the codecs branch lands the real dump format.
import EtcdGateway
public final class DumpWriter {
    public init(path: String) throws {}
    public func write(_ kv: KeyValue) throws {}
    public func finish() throws -> String { "" }
}
public final class DumpReader {
    public init(path: String) throws {}
    public func next() throws -> KeyValue? { nil }
}
public func verifyDumpChecksum(path: String) throws -> String { "" }
