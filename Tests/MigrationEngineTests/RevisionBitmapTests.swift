import Testing

@testable import MigrationEngine

@Suite("Revision bitmap (the run's own writes)")
struct RevisionBitmapTests {
    @Test(arguments: [Int64(0), 1003, 9_999_999])
    func holdsExactlyWhatWasInserted(base: Int64) {
        var bitmap = RevisionBitmap(above: base)
        // Word boundaries, a far jump (growth), and a repeat.
        let offsets: [Int64] = [1, 63, 64, 65, 128, 4_097, 70_000, 64]
        var fresh: [Bool] = []
        for offset in offsets { fresh.append(bitmap.insert(base + offset)) }
        #expect(fresh == [true, true, true, true, true, true, true, false])
        #expect(bitmap.count == 7)
        for offset: Int64 in 1...70_100 {
            #expect(bitmap.contains(base + offset) == offsets.contains(offset), "offset \(offset)")
        }
        #expect(!bitmap.contains(base))
        #expect(!bitmap.contains(base - 5))
    }
}
