import MigrationEngine

/// The restore's refusal in the operator's words: which signals differ, what would be lost,
/// which flag overrides it, and that the endpoint may simply be the wrong one. The engine
/// refuses with the plan (`MigrationError.refusedRestore`); the command words it.
extension RestorePlan {
    func refusalMessage(backup path: String) -> String {
        "refusing to restore \(path); nothing was written. " + refusalReasons(backup: path)
    }

    /// `refusalMessage` without its first sentence (a dry run words its own).
    func refusalReasons(backup path: String) -> String {
        let endpoint = target.endpoints.isEmpty ? "the target etcd" : target.endpoints.joined(separator: ",")
        var parts: [String] = []
        if refusals.contains(.otherCluster) {
            let signals = mismatches.map { m -> String in
                switch m.signal {
                case .clusterID: "its cluster ID is \(m.target), the backup's is \(m.backup)"
                case .revision: "its revision is \(m.target), below the backup's \(m.backup)"
                case .keys: "it holds \(m.target)"
                }
            }
            parts.append(
                "\(endpoint) does not look like the cluster \(path) was taken from"
                    + (origin.map { " (\($0.endpoints.joined(separator: ",")), \($0.takenAt))" } ?? "") + ": "
                    + signals.joined(separator: "; ") + ".")
        }
        if refusals.contains(.originUnknown) {
            parts.append(
                "\(path) records no origin (it was written by an earlier pachmigrate, or by `convert`), "
                    + "so whether \(endpoint) is its cluster cannot be checked.")
        }
        if refusals.contains(.otherCluster) || refusals.contains(.originUnknown) {
            parts.append(
                "\(endpoint) holds \(targetKeys) key(s) under the roots; restoring would remove \(toRemove) of them "
                    + "and replace the rest with the backup's \(backupKeys). "
                    + "Check --endpoints: you may be pointing at the wrong cluster. If replacing this cluster is intended, "
                    + "run again with --onto-other-cluster.")
        }
        if refusals.contains(.newerWrites) {
            parts.append(
                "\(newerWrites) key(s) under the roots were written after the backup (revision \(backupRevision)) by something "
                    + "other than pachmigrate (pachd, most likely); restoring would throw those writes away. Stop pachd; "
                    + "if losing them is intended, run again with --discard-newer-writes.")
        }
        return parts.joined(separator: " ")
    }
}
