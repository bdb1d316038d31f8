import EtcdGateway
import Testing

/// Every key shown to a person (text, logs, JSON) goes through `printable`: nothing a
/// terminal would interpret, and bytes that are not UTF-8 stay visible as `\xNN`.
@Suite("Keys as text")
struct PrintableKeyTests {
    @Test(arguments: [
        ("pachyderm_pfs/repos/images", "pachyderm_pfs/repos/images"),
        ("pachyderm_pfs/commits/é", "pachyderm_pfs/commits/é"),
        ("a\u{1b}[2Jb", "a\\x1b[2Jb"),
        ("tab\there", "tab\\x09here"),
        ("del\u{7f}", "del\\x7f"),
        ("c1\u{85}", "c1\\xc2\\x85"),
        ("back\\slash\u{1}", "back\\x5cslash\\x01"),
    ])
    func textKeys(key: String, shown: String) {
        #expect(Array(key.utf8).printable == shown)
    }

    @Test func bytesThatAreNotUTF8AreEscaped() {
        let key: [UInt8] = Array("pachyderm_pfs/commits__index_x/".utf8) + [0xff, 0xfe, 0x00, 0x41]
        let shown = key.printable
        #expect(shown == "pachyderm_pfs/commits__index_x/\\xff\\xfe\\x00A")
        #expect(shown.unicodeScalars.allSatisfy { $0.value >= 0x20 && $0.value < 0x7f })
    }
}
