import MigrationEngine
import Testing

@Suite("The space preflight's arithmetic")
struct SpaceEstimateTests {
    // 10,000 record writes of 500 bytes each on a 100 MB backend.
    let writes = 10_000
    let writeBytes: Int64 = 5_000_000
    var growth: Int64 { SpaceEstimate.growth(writeBytes: writeBytes, writes: writes) }

    @Test func withoutCompactionTheWholeCopyCounts() {
        let estimate = SpaceEstimate(
            currentBytes: 100_000_000, inUseBytes: nil, writeBytes: writeBytes, writes: writes, quotaBytes: 2 << 30, compactEvery: nil)
        #expect(growth == Int64(Double(5_000_000 + 10_000 * 380) * 1.25))
        #expect(estimate.expectedGrowthBytes == growth)
        #expect(estimate.projectedBytes == 100_000_000 + growth)
        #expect(estimate.uncompactedProjectedBytes == nil)
        #expect(!estimate.fitsOnlyIfCompactionFrees)
    }

    /// Free pages count as room: the projection starts from the part in use.
    @Test func projectionStartsFromTheSizeInUseButNeverBelowTheFile() {
        let roomy = SpaceEstimate(
            currentBytes: 100_000_000, inUseBytes: 40_000_000, writeBytes: writeBytes, writes: writes, quotaBytes: 2 << 30,
            compactEvery: nil)
        #expect(roomy.projectedBytes == max(100_000_000, 40_000_000 + growth))
        let tiny = SpaceEstimate(
            currentBytes: 100_000_000, inUseBytes: 1_000_000, writeBytes: 1000, writes: 1, quotaBytes: 2 << 30, compactEvery: nil)
        #expect(tiny.projectedBytes == 100_000_000)
    }

    /// With --compact the decision counts two intervals of growth, and the estimate also says
    /// where the backend would end were compaction to free nothing; between the two, the run
    /// fits only if compaction frees enough.
    @Test(arguments: [
        (quota: Int64(100_500_000), fits: false, onlyIfFrees: false),
        (quota: Int64(102_000_000), fits: true, onlyIfFrees: true),
        (quota: Int64(120_000_000), fits: true, onlyIfFrees: false),
    ])
    func compactingProjectionAndItsWorstCase(quota: Int64, fits: Bool, onlyIfFrees: Bool) {
        let estimate = SpaceEstimate(
            currentBytes: 100_000_000, inUseBytes: nil, writeBytes: writeBytes, writes: writes, quotaBytes: quota, compactEvery: 500)
        #expect(estimate.expectedGrowthBytes == Int64(Double(growth) / Double(writes) * 1000))
        #expect(estimate.uncompactedProjectedBytes == 100_000_000 + growth)
        #expect(estimate.fits == fits)
        #expect(estimate.fitsOnlyIfCompactionFrees == onlyIfFrees)
    }
}
