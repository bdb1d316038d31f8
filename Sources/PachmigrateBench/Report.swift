import ArgumentParser

import PlatformShim

/// `report`: turns the raw measurement lines Scripts/bench collected (one `key=value …`
/// line per run) into medians, a table on stdout and a JSON document, and checks the
/// targets. The JSON is what to keep and compare across commits.
struct Report: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Medians, table and JSON from raw measurement lines.")

    @Option(help: "Raw measurement lines (written by Scripts/bench).")
    var raw: String

    @Option(help: "Where to write the JSON results.")
    var json: String

    @Option(help: "Free-form description of the machine, stored in the JSON.")
    var machine: String = ""

    @Option(help: "The commit measured, stored in the JSON.")
    var commit: String = ""

    struct Row {
        var size: Int
        var kind: String
        var runs: Int
        var keys: Int
        var records: Int
        var textBytes: Int
        /// Wall-clock seconds (median).
        var seconds: Double
        /// CPU seconds, user + system (median).
        var cpuSeconds: Double
        var rssKiB: Int
        /// Offline convert is single-threaded and judged per core: its rate is per CPU second,
        /// which other work on a shared machine does not inflate. Live runs are wall clock.
        var rateSeconds: Double { kind == "convert" ? cpuSeconds : seconds }
        var recordsPerSecond: Double { rateSeconds > 0 ? Double(records) / rateSeconds : 0 }
        var keysPerSecond: Double { rateSeconds > 0 ? Double(keys) / rateSeconds : 0 }
        var ratioToLimit: Double?
        /// Migrate only: the txns it made, and its longest ordering group's records (the
        /// floor on txns: records of one group need a txn each).
        var txns: Int?
        var longestGroup: Int?
    }

    /// Run kinds, in table order.
    static let kinds = ["convert", "write-limit", "read-all", "plan", "migrate", "migrate-backup"]

    func run() throws {
        guard let file = fopen(raw, "r") else { throw BenchError(.io, "cannot read \(raw)") }
        var samples: [String: [[String: String]]] = [:]
        var line: UnsafeMutablePointer<CChar>? = nil
        var capacity = 0
        while getline(&line, &capacity, file) > 0 {
            var fields: [String: String] = [:]
            for pair in String(cString: line!).split(whereSeparator: { $0 == " " || $0 == "\n" }) {
                let parts = pair.split(separator: "=", maxSplits: 1)
                if parts.count == 2 { fields[String(parts[0])] = String(parts[1]) }
            }
            guard let size = fields["size"], let kind = fields["kind"] else { continue }
            samples["\(size) \(kind)", default: []].append(fields)
        }
        free(line)
        fclose(file)

        var rows: [Row] = []
        let sizes = Set(samples.keys.compactMap { Int($0.split(separator: " ")[0]) }).sorted()
        for size in sizes {
            for kind in Self.kinds {
                guard let runs = samples["\(size) \(kind)"], let first = runs.first else { continue }
                rows.append(
                    Row(
                        size: size, kind: kind, runs: runs.count, keys: Int(first["keys"] ?? "") ?? 0,
                        records: Int(first["records"] ?? "") ?? 0, textBytes: Int(first["record_text_bytes"] ?? "") ?? 0,
                        seconds: median(runs.compactMap { Double($0["seconds"] ?? "") }),
                        cpuSeconds: median(runs.compactMap { Double($0["cpu_seconds"] ?? "") }),
                        rssKiB: Int(median(runs.compactMap { Double($0["max_rss_kib"] ?? "") })),
                        txns: optionalMedian(runs.compactMap { Double($0["txns"] ?? "") }),
                        longestGroup: optionalMedian(runs.compactMap { Double($0["longest_group"] ?? "") })))
            }
        }
        for i in rows.indices where rows[i].kind.hasPrefix("migrate") {
            if let limit = rows.first(where: { $0.size == rows[i].size && $0.kind == "write-limit" }), limit.recordsPerSecond > 0 {
                rows[i].ratioToLimit = rows[i].recordsPerSecond / limit.recordsPerSecond
            }
        }
        let checks = targetChecks(rows)
        print(table(rows))
        print("")
        for check in checks { print("\(check.met ? "MET   " : "MISSED") \(check.name): \(check.measured)") }
        try writeFile(json, jsonDocument(rows, checks))
        print("\nwrote \(json)")
    }

    private func optionalMedian(_ values: [Double]) -> Int? { values.isEmpty ? nil : Int(median(values)) }

    private func median(_ values: [Double]) -> Double {
        guard !values.isEmpty else { return 0 }
        let sorted = values.sorted()
        return sorted.count % 2 == 1 ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
    }

    struct Check {
        var name: String
        var met: Bool
        var measured: String
    }

    /// The performance targets (see docs/performance.md), for every size measured.
    private func targetChecks(_ rows: [Row]) -> [Check] {
        var checks: [Check] = []
        func row(_ size: Int, _ kind: String) -> Row? { rows.first { $0.size == size && $0.kind == kind } }
        let sizes = Set(rows.map(\.size)).sorted()
        for size in sizes {
            if let migrate = row(size, "migrate"), let ratio = migrate.ratioToLimit {
                checks.append(Check(name: "migrate at \(size) keys >= 1.6x write limit", met: ratio >= 1.6, measured: fixed(ratio, 2) + "x"))
            }
            if let plan = row(size, "plan"), let read = row(size, "read-all"), read.seconds > 0 {
                let ratio = plan.seconds / read.seconds
                checks.append(
                    Check(name: "plan at \(size) keys <= 2x reading every key once", met: ratio <= 2, measured: fixed(ratio, 2) + "x"))
            }
            if let convert = row(size, "convert") {
                checks.append(
                    Check(
                        name: "convert at \(size) keys >= 100k records/s (per CPU second)", met: convert.recordsPerSecond >= 100_000,
                        measured: "\(Int(convert.recordsPerSecond)) records/s, \(Int(convert.keysPerSecond)) keys/s"))
            }
            if let migrate = row(size, "migrate"), let backup = row(size, "migrate-backup"), migrate.seconds > 0 {
                let overhead = backup.seconds / migrate.seconds - 1
                checks.append(
                    Check(name: "backup adds <= 3% at \(size) keys", met: overhead <= 0.03, measured: fixed(overhead * 100, 1) + "%"))
            }
            let peak = rows.filter { $0.size == size && $0.kind != "write-limit" }.map(\.rssKiB).max() ?? 0
            if size >= 100_000 {
                checks.append(Check(name: "peak RSS at \(size) keys <= 64 MiB", met: peak <= 64 * 1024, measured: "\(peak / 1024) MiB"))
            }
        }
        if let base = sizes.first(where: { $0 == 100_000 }), let big = sizes.first(where: { $0 >= 1_000_000 }) {
            for kind in Self.kinds where kind != "write-limit" {
                if let a = row(base, kind), let b = row(big, kind), a.rssKiB > 0 {
                    let growth = Double(b.rssKiB) / Double(a.rssKiB) - 1
                    checks.append(
                        Check(
                            name: "\(kind) RSS at \(big) keys <= 110% of \(base)", met: growth <= 0.10, measured: "+" + fixed(growth * 100, 1) + "%"))
                }
            }
        }
        return checks
    }

    private func table(_ rows: [Row]) -> String {
        var lines = [
            "| keys | kind | runs | records | median s (wall) | median s (CPU) | records/s | keys/s | MB/s text | ratio to limit | "
                + "longest group (floor on txns) | txns (× floor) | peak RSS MiB |",
            "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for row in rows {
            let mbps = row.kind == "convert" && row.rateSeconds > 0 ? fixed(Double(row.textBytes) / row.rateSeconds / 1e6, 1) : ""
            let ratio = row.ratioToLimit.map { fixed($0, 2) + "x" } ?? (row.kind == "write-limit" ? "1.00x" : "")
            // The best a run can do against the limit is records / longest group (one txn per
            // record of the longest group, every other record riding along).
            let floor = row.longestGroup.map { "\($0) (\(fixed(100 * Double($0) / Double(max(1, row.records)), 1))%)" } ?? ""
            let txns = row.txns.map { t in "\(t)" + (row.longestGroup.map { " (\(fixed(Double(t) / Double(max(1, $0)), 2))×)" } ?? "") } ?? ""
            lines.append(
                "| \(row.keys) | \(row.kind) | \(row.runs) | \(row.records) | \(fixed(row.seconds, 2)) | \(fixed(row.cpuSeconds, 2)) | "
                    + "\(Int(row.recordsPerSecond)) | \(Int(row.keysPerSecond)) | \(mbps) | \(ratio) | \(floor) | \(txns) | "
                    + "\(fixed(Double(row.rssKiB) / 1024, 1)) |"
            )
        }
        return lines.joined(separator: "\n")
    }

    private func jsonDocument(_ rows: [Row], _ checks: [Check]) -> String {
        let results = rows.map { row in
            var fields = [
                "\"size\": \(row.size)", "\"kind\": \(quoted(row.kind))", "\"runs\": \(row.runs)", "\"keys\": \(row.keys)",
                "\"records\": \(row.records)", "\"record_text_bytes\": \(row.textBytes)",
                "\"median_seconds\": \(fixed(row.seconds, 4))", "\"median_cpu_seconds\": \(fixed(row.cpuSeconds, 4))",
                "\"records_per_second\": \(fixed(row.recordsPerSecond, 1))", "\"keys_per_second\": \(fixed(row.keysPerSecond, 1))",
                "\"peak_rss_kib\": \(row.rssKiB)",
            ]
            if let ratio = row.ratioToLimit { fields.append("\"ratio_to_write_limit\": \(fixed(ratio, 4))") }
            if let txns = row.txns { fields.append("\"txns\": \(txns)") }
            if let longest = row.longestGroup { fields.append("\"longest_group\": \(longest)") }
            return "    {" + fields.joined(separator: ", ") + "}"
        }
        let targets = checks.map { "    {\"target\": \(quoted($0.name)), \"met\": \($0.met), \"measured\": \(quoted($0.measured))}" }
        return """
            {
              "commit": \(quoted(commit)),
              "machine": \(quoted(machine)),
              "results": [
            \(results.joined(separator: ",\n"))
              ],
              "targets": [
            \(targets.joined(separator: ",\n"))
              ]
            }

            """
    }

    private func quoted(_ s: String) -> String {
        var out = "\""
        for c in s.unicodeScalars {
            switch c {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case _ where c.value < 0x20: out += "\\u00" + (c.value < 0x10 ? "0" : "") + String(c.value, radix: 16)
            default: out.unicodeScalars.append(c)
            }
        }
        return out + "\""
    }

    private func fixed(_ value: Double, _ digits: Int) -> String {
        var scale = 1.0
        for _ in 0..<digits { scale *= 10 }
        let rounded = (value * scale).rounded() / scale
        var text = "\(rounded)"
        if text.contains("e") { return text }
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        let decimals = parts.count > 1 ? parts[1].count : 0
        if digits == 0 { return String(parts[0]) }
        if decimals == 0 { text += "." }
        return text + String(repeating: "0", count: max(0, digits - decimals))
    }
}
