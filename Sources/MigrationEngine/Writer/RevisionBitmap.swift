/// A set of etcd revisions above a base revision, one bit each. A run's own writes take
/// nearly every revision after the run starts, so this holds them in (last − base) / 8
/// bytes, where a `Set<Int64>` would take 10–20 bytes per write and grow with the cluster.
struct RevisionBitmap: Sendable {
    /// Every member is above this.
    let base: Int64
    private var words: [UInt64] = []
    private(set) var count = 0

    init(above base: Int64) { self.base = base }

    /// Adds `revision`; returns false when it was there already.
    @discardableResult
    mutating func insert(_ revision: Int64) -> Bool {
        precondition(revision > base, "revision \(revision) is not above the base \(base)")
        let (word, bit) = position(revision)
        if word >= words.count { words += Array(repeating: 0, count: max(word + 1 - words.count, words.count)) }
        let mask = UInt64(1) << bit
        guard words[word] & mask == 0 else { return false }
        words[word] |= mask
        count += 1
        return true
    }

    func contains(_ revision: Int64) -> Bool {
        guard revision > base else { return false }
        let (word, bit) = position(revision)
        return word < words.count && words[word] & (UInt64(1) << bit) != 0
    }

    private func position(_ revision: Int64) -> (word: Int, bit: Int) {
        let offset = Int(revision - base - 1)
        return (offset >> 6, offset & 63)
    }
}
