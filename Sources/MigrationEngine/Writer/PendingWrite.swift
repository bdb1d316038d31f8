import EtcdGateway
import EtcdModel

/// What the writer needs of one record, computed by the scan's one conversion and carried
/// through the on-disk sort as a `KeyRevision`'s payload: the writer reads no value from
/// etcd and converts nothing. The key and original mod revision travel as the entry's own.
struct PendingWrite: Sendable, Hashable {
    /// The value to put: the converted one, or the record as it is when it is re-put only
    /// to keep its group's order.
    var value: [UInt8]
    /// The record's lease, kept on the rewrite (a put without one would detach it).
    var lease: Int64
    /// Re-put unchanged only to keep its group's order.
    var keptInOrder: Bool
    /// Keys created with it, only if absent (`RecordConversion.companions`).
    var companions: [Companion]

    struct Companion: Sendable, Hashable {
        var key: [UInt8]
        var value: [UInt8]
    }

    var encoded: [UInt8] {
        var out = SpillBytes()
        out.append(UInt8(keptInOrder ? 1 : 0))
        out.append(lease)
        out.append(value)
        out.append(UInt32(companions.count))
        for companion in companions {
            out.append(companion.key)
            out.append(companion.value)
        }
        return out.bytes
    }

    init(value: [UInt8], lease: Int64, keptInOrder: Bool, companions: [Companion]) {
        self.value = value
        self.lease = lease
        self.keptInOrder = keptInOrder
        self.companions = companions
    }

    init(decoding payload: [UInt8]) throws(MigrationError) {
        var input = SpillBytes.Reader(payload)
        keptInOrder = try input.byte() != 0
        lease = try input.integer(Int64.self)
        value = try input.bytes()
        companions = []
        for _ in 0..<(try input.integer(UInt32.self)) {
            companions.append(Companion(key: try input.bytes(), value: try input.bytes()))
        }
    }
}

extension KeyValue {
    /// The record as read, for the backup's spill (the key and mod revision travel as the
    /// entry's own).
    var spilled: [UInt8] {
        var out = SpillBytes()
        out.append(createRevision)
        out.append(version)
        out.append(lease)
        out.append(value)
        return out.bytes
    }

    init(spilled entry: KeyRevision) throws(MigrationError) {
        var input = SpillBytes.Reader(entry.payload)
        let createRevision = try input.integer(Int64.self)
        let version = try input.integer(Int64.self)
        let lease = try input.integer(Int64.self)
        self.init(
            key: entry.key, value: try input.bytes(), createRevision: createRevision, modRevision: entry.modRevision,
            version: version, lease: lease)
    }
}

/// Little-endian integers (of the width of their type: pass typed values, never literals)
/// and length-prefixed byte strings: the payloads' format.
struct SpillBytes {
    var bytes: [UInt8] = []

    mutating func append<T: FixedWidthInteger>(_ value: T) {
        withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
    }
    mutating func append(_ data: [UInt8]) {
        append(UInt32(data.count))
        bytes.append(contentsOf: data)
    }

    struct Reader {
        private let data: [UInt8]
        private var position = 0

        init(_ data: [UInt8]) { self.data = data }

        mutating func byte() throws(MigrationError) -> UInt8 {
            try need(1)
            defer { position += 1 }
            return data[position]
        }

        mutating func integer<T: FixedWidthInteger>(_: T.Type) throws(MigrationError) -> T {
            let size = MemoryLayout<T>.size
            try need(size)
            var value: T = 0
            for i in 0..<size { value |= T(truncatingIfNeeded: data[position + i]) << (8 * i) }
            position += size
            return value
        }

        mutating func bytes() throws(MigrationError) -> [UInt8] {
            let length = Int(try integer(UInt32.self))
            try need(length)
            defer { position += length }
            return Array(data[position..<position + length])
        }

        private func need(_ count: Int) throws(MigrationError) {
            guard position + count <= data.count else {
                throw MigrationError(.invalidState, "the temporary sort file holds a truncated entry")
            }
        }
    }
}
