/// A failure reading, writing or verifying a dump file.

import EtcdModel
public struct DumpError: Error, Sendable, Hashable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        fileprivate enum Base: String, Hashable, Sendable { case io, alreadyExists, malformedLine, checksumMismatch, missingChecksum }
        fileprivate let base: Base
        /// open/read/write/fsync failed (errno in the message).
        public static let io = Code(base: .io)
        /// The output file exists and overwriting was not asked for.
        public static let alreadyExists = Code(base: .alreadyExists)
        /// A line is not one etcd `KeyValue` in JSON.
        public static let malformedLine = Code(base: .malformedLine)
        /// The file's SHA-256 differs from its `.sha256` file.
        public static let checksumMismatch = Code(base: .checksumMismatch)
        /// No readable `.sha256` file next to the dump.
        public static let missingChecksum = Code(base: .missingChecksum)
        public var description: String { base.rawValue }
    }

    public var code: Code
    public var path: String
    /// 1-based line number, for `malformedLine`.
    public var line: Int?
    public var message: String

    public init(code: Code, path: String, line: Int? = nil, message: String) {
        self.code = code
        self.path = path
        self.line = line
        self.message = message
    }

    public var description: String { "\(path)\(line.map { ":\($0)" } ?? ""): \(message)" }
}
