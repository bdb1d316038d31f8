import PachydermMigrations
import Testing

struct MalformedCase: Sendable, CustomTestStringConvertible {
    var name: String
    var kind: RecordKind
    var value: [UInt8]
    var code: RecordCodecError.Code
    var field: String?
    var offset: Int?
    var testDescription: String { name }

    init(_ name: String, _ kind: RecordKind, _ text: String, _ code: RecordCodecError.Code, field: String?, offset: Int?) {
        self.init(name, kind, Array(text.utf8), code, field: field, offset: offset)
    }
    init(_ name: String, _ kind: RecordKind, _ value: [UInt8], _ code: RecordCodecError.Code, field: String?, offset: Int?) {
        self.name = name
        self.kind = kind
        self.value = value
        self.code = code
        self.field = field
        self.offset = offset
    }
}

@Suite("Malformed values fail with the key, the field and the byte")
struct MalformedInputTests {
    static let cases: [MalformedCase] = [
        MalformedCase("truncated inside a message", .job, #"job:<id:"j1" > pipeline:<name:"p" "#, .unbalancedNesting, field: nil, offset: 24),
        MalformedCase("truncated inside a string", .job, #"job:<id:"j1"#, .unterminatedString, field: nil, offset: 8),
        MalformedCase("stray >", .job, #"job:<id:"j1" > > "#, .unbalancedNesting, field: nil, offset: 15),
        MalformedCase("mismatched brackets", .job, #"job:<id:"j1" } "#, .unbalancedNesting, field: nil, offset: 13),
        MalformedCase("unknown field", .job, #"job:<id:"j1" > bogus:1 "#, .unknownField, field: "bogus", offset: 15),
        MalformedCase("unknown nested field", .job, #"transform:<image:"x" colour:"red" > "#, .unknownField, field: "transform.colour", offset: 21),
        MalformedCase(
            "JSON name instead of the proto name", .pipeline, #"output_branch:"master" "#, .unknownField, field: "output_branch", offset: 0),
        MalformedCase("string for an int64", .job, #"state:JOB_RUNNING data_total:"many" "#, .invalidFieldValue, field: "data_total", offset: 18),
        MalformedCase("number for bytes", .job, #"job:<id:1 > "#, .invalidFieldValue, field: "job.id", offset: 5),
        MalformedCase("1.5 enum name", .job, #"state:JOB_KILLED "#, .invalidFieldValue, field: "state", offset: 0),
        MalformedCase(
            "another kind's record under this key", .job, #"commit:<repo:<name:"r" > id:"c" > "#, .unknownField, field: "commit", offset: 0),
        MalformedCase("field without a value", .job, #"state: "#, .malformedText, field: nil, offset: 0),
        MalformedCase("byte ≥ 0x80 (unescaped UTF-8)", .job, "job:<id:\"j\u{e9}\" > ", .nonTextByte, field: nil, offset: 10),
        MalformedCase("raw control byte", .job, "job:<id:\"j\n1\" > ", .nonTextByte, field: nil, offset: 10),
        MalformedCase("binary garbage", .job, [0x00, 0x01, 0x02], .notARecord, field: nil, offset: 0),
        MalformedCase("truncated binary", .commit, [0x0a, 0x10, 0x0a, 0x03], .notARecord, field: nil, offset: 0),
        MalformedCase("JSON", .repo, #"{"repo":{"name":"r"}}"#, .notARecord, field: nil, offset: 0),
    ]

    @Test(arguments: cases)
    func fails(_ c: MalformedCase) throws {
        let key = defaultKey(c.kind)
        let error = try #require(throws: RecordCodecError.self) {
            try Pachyderm14To15Step.convert(kind: c.kind, key: Array(key.utf8), value: c.value)
        }
        #expect(error.code == c.code, "\(error)")
        #expect(error.key == key)
        #expect(error.field == c.field, "\(error)")
        #expect(error.byteOffset == c.offset, "\(error)")
        #expect(error.description.hasPrefix(key))
        #expect(!error.message.isEmpty)
    }

    @Test("the message says what to do")
    func actionable() throws {
        let error = try #require(throws: RecordCodecError.self) {
            try convertText(.job, #"job:<id:"j1" > bogus:1 "#)
        }
        #expect(error.description.contains("pachyderm_pps/jobs/j1: field `bogus` at byte 15:"))
        #expect(error.message.contains("fix or delete the key"))
    }
}
