import MigrationEngine

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

func defaultBackupPath(from: String) -> String {
    let stamp = Date().formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: false))
        .replacing(":", with: "")
    return "pachmigrate-backup-\(from)-\(stamp).jsonl"
}

/// `path` made absolute against the working directory: the journal records where the backup
/// is for whoever resumes or restores, from wherever they run.
func absolutePath(_ path: String) -> String {
    guard !path.hasPrefix("/") else { return path }
    let cwd = FileManager.default.currentDirectoryPath
    return (cwd.hasSuffix("/") ? cwd : cwd + "/") + (path.hasPrefix("./") ? String(path.dropFirst(2)) : path)
}

extension UnfinishedRun {
    /// Where its backup is, as `host:/path`, for the report and `status`.
    var backupText: String? {
        backupPath.map { path in "\(backupHost.map { "\($0):" } ?? "")\(path)\(backupSHA256.map { " (sha256 \($0))" } ?? "")" }
    }

    var text: String {
        "Resuming run \(runID) (\(status.name(stoppedOnRequest: interrupted)), started \(startedAt)): \(written) of \(records) "
            + "records written by its earlier attempt(s); backup from its first attempt: \(backupText ?? "none (--no-backup)")"
    }
}
