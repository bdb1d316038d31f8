import Foundation
import PachmigrateCLI
import Testing
import Yams

/// deploy/ must run as written: every manifest names the image the Dockerfile builds, runs
/// it as non-root on a read-only root, gives it what each command writes to (TMPDIR on an
/// emptyDir, the backup on a PVC), mounts etcd's TLS files and password from the Secret
/// deploy/ defines, and fails or retries the Job exactly as the CLI's exit codes say.
@Suite("deploy/ manifests and the Dockerfile")
struct DeployManifestTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    static let defaultImage = "pachmigrate:\(toolVersion)"

    /// Every YAML document under deploy/, with the file it came from.
    static func documents() throws -> [(file: String, document: [String: Any])] {
        let dir = root.appendingPathComponent("deploy")
        let files = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasSuffix(".yaml") }.sorted()
        return try files.flatMap { file in
            let text = try String(contentsOf: dir.appendingPathComponent(file), encoding: .utf8)
            return try Yams.load_all(yaml: text).compactMap { $0 as? [String: Any] }.map { (file, $0) }
        }
    }

    /// A pod spec in a document: a Job's template, or a patch of a Deployment's template.
    struct PodSpec {
        var file: String
        var spec: [String: Any]
        var containers: [[String: Any]] {
            ((spec["initContainers"] as? [[String: Any]]) ?? []) + ((spec["containers"] as? [[String: Any]]) ?? [])
        }
        var volumes: [String: [String: Any]] {
            Dictionary(((spec["volumes"] as? [[String: Any]]) ?? []).map { ($0["name"] as? String ?? "", $0) }) { a, _ in a }
        }
        /// mountPath → volume, for one container's mounts.
        func mounts(_ container: [String: Any]) -> [(path: String, volume: [String: Any])] {
            ((container["volumeMounts"] as? [[String: Any]]) ?? []).compactMap { mount in
                guard let path = mount["mountPath"] as? String, let name = mount["name"] as? String, let volume = volumes[name]
                else { return nil }
                return (path, volume)
            }
        }
    }

    static func podSpecs(_ documents: [(file: String, document: [String: Any])]) -> [PodSpec] {
        documents.compactMap { file, document in
            let template = (document["spec"] as? [String: Any])?["template"] as? [String: Any]
            return (template?["spec"] as? [String: Any]).map { PodSpec(file: file, spec: $0) }
        }
    }

    /// `--name=value` or `--name value`.
    static func argument(_ name: String, in args: [String]) -> String? {
        for (i, arg) in args.enumerated() {
            if arg.hasPrefix("--\(name)=") { return String(arg.dropFirst(name.count + 3)) }
            if arg == "--\(name)", i + 1 < args.count { return args[i + 1] }
        }
        return nil
    }

    static func env(_ container: [String: Any]) -> [String: [String: Any]] {
        Dictionary(((container["env"] as? [[String: Any]]) ?? []).map { ($0["name"] as? String ?? "", $0) }) { a, _ in a }
    }

    static func isUnder(_ path: String, _ directory: String) -> Bool {
        path.hasPrefix(directory.hasSuffix("/") ? directory : directory + "/")
    }

    @Test func everyContainerRunsTheDefaultImageAsNonRootWithWhatItNeeds() throws {
        let documents = try Self.documents()
        let secrets = documents.filter { $0.document["kind"] as? String == "Secret" }.map(\.document)
        let claims = Set(
            documents.filter { $0.document["kind"] as? String == "PersistentVolumeClaim" }
                .compactMap { ($0.document["metadata"] as? [String: Any])?["name"] as? String })
        let pods = Self.podSpecs(documents)
        #expect(Set(pods.map(\.file)) == ["migration-job.yaml", "pachd-init-container.yaml"])
        #expect(secrets.count == 1 && !claims.isEmpty)

        var commands: [String] = []
        for pod in pods {
            let podSecurity = pod.spec["securityContext"] as? [String: Any] ?? [:]
            for container in pod.containers {
                let name = "\(pod.file): \(container["name"] ?? "?")"
                let args = container["args"] as? [String] ?? []
                let command = args.first ?? ""
                commands.append(command)
                #expect(container["image"] as? String == Self.defaultImage, "\(name)")

                // The container's own securityContext wins over the pod's, as in Kubernetes.
                let security = podSecurity.merging(container["securityContext"] as? [String: Any] ?? [:]) { $1 }
                #expect(security["runAsNonRoot"] as? Bool == true, "\(name)")
                #expect(security["runAsUser"] as? Int == 65532, "\(name)")
                #expect(security["readOnlyRootFilesystem"] as? Bool == true, "\(name)")

                let resources = container["resources"] as? [String: Any] ?? [:]
                for kind in ["requests", "limits"] {
                    let values = resources[kind] as? [String: Any] ?? [:]
                    #expect(values["memory"] != nil && values["cpu"] != nil, "\(name): \(kind)")
                }

                // The etcd client's files come from the Secret, mounted read-only; the user from its key.
                let mounts = pod.mounts(container)
                let secretMounts = mounts.filter { $0.volume["secret"] != nil }
                #expect(secretMounts.count == 1, "\(name)")
                let secretName = (secretMounts.first?.volume["secret"] as? [String: Any])?["secretName"] as? String
                let secret = secrets.first { ($0["metadata"] as? [String: Any])?["name"] as? String == secretName }
                let secretKeys = Set(((secret?["stringData"] as? [String: Any]) ?? [:]).keys)
                #expect(secret != nil, "\(name): secret \(secretName ?? "none") is not in deploy/")
                let env = Self.env(container)
                let files =
                    ["ETCDCTL_CACERT", "ETCDCTL_CERT", "ETCDCTL_KEY"].compactMap { env[$0]?["value"] as? String }
                    + [Self.argument("password-file", in: args)].compactMap { $0 }
                #expect(files.count == 4, "\(name)")
                for file in files {
                    let mount = try #require(secretMounts.first, "\(name)")
                    #expect(Self.isUnder(file, mount.path), "\(name): \(file)")
                    #expect(secretKeys.contains(String(file.dropFirst(mount.path.count + 1))), "\(name): \(file)")
                }
                let userRef = ((env["ETCDCTL_USER"]?["valueFrom"] as? [String: Any])?["secretKeyRef"] as? [String: Any])
                #expect(userRef?["name"] as? String == secretName, "\(name)")
                #expect(secretKeys.contains(userRef?["key"] as? String ?? ""), "\(name)")

                // Commands that scan spill their sort runs to TMPDIR: an emptyDir.
                if ["migrate", "plan", "verify", "backup", "restore"].contains(command) {
                    let tmp = try #require(env["TMPDIR"]?["value"] as? String, "\(name)")
                    #expect(mounts.contains { $0.path == tmp && $0.volume["emptyDir"] != nil }, "\(name): TMPDIR \(tmp)")
                }
                // The backup must outlive the pod: a PVC that deploy/ defines.
                if let backup = Self.argument("backup", in: args) {
                    let claim = mounts.first { Self.isUnder(backup, $0.path) }
                        .flatMap { ($0.volume["persistentVolumeClaim"] as? [String: Any])?["claimName"] as? String }
                    #expect(claim.map(claims.contains) == true, "\(name): backup \(backup)")
                }
                if command == "wait" { #expect(Self.argument("version", in: args) == "1.5.0", "\(name)") }
            }
        }
        #expect(commands.sorted() == ["migrate", "wait"])
    }

    /// FailJob for every code that needs a person, never for one a rerun can get past, and
    /// success nowhere: read from the CLI's exit-code table, not a copy of it.
    @Test func jobFailurePolicyMatchesTheExitCodes() throws {
        let jobs = try Self.documents().filter { $0.document["kind"] as? String == "Job" }.map(\.document)
        #expect(jobs.count == 1)
        for job in jobs {
            let spec = try #require(job["spec"] as? [String: Any])
            let pod = try #require(Self.podSpecs([("job", job)]).first)
            #expect(pod.spec["restartPolicy"] as? String == "Never")
            let containerNames = Set(pod.containers.compactMap { $0["name"] as? String })
            let rules = try #require((spec["podFailurePolicy"] as? [String: Any])?["rules"] as? [[String: Any]])
            var codes: [String: [Int32]] = [:]
            for rule in rules {
                guard let onExitCodes = rule["onExitCodes"] as? [String: Any] else { continue }
                #expect(onExitCodes["operator"] as? String == "In")
                #expect(containerNames.contains(onExitCodes["containerName"] as? String ?? ""))
                codes[rule["action"] as? String ?? "?", default: []] += (onExitCodes["values"] as? [Int] ?? []).map(Int32.init)
            }
            let needsAPerson = ExitStatus.allCases.filter { $0 != .ok && !$0.retryable }.map(\.rawValue)
            let rerunnable = ExitStatus.allCases.filter(\.retryable).map(\.rawValue)
            #expect(codes["FailJob", default: []].sorted() == needsAPerson.sorted())
            // Retried: listed as Ignore or Count, or left to the default (Count).
            #expect(Set(codes["Ignore", default: []] + codes["Count", default: []]).isSubset(of: rerunnable))
            #expect(Set(codes.keys).isSubset(of: ["FailJob", "Ignore", "Count"]))
            #expect(!codes.values.joined().contains(ExitStatus.ok.rawValue))
            #expect((spec["backoffLimit"] as? Int ?? 0) > 0)
        }
    }

    /// The image the manifests name is the one the Dockerfile builds and README documents.
    @Test func dockerfileAndReadmeAgreeOnTheDefaultImage() throws {
        let dockerfile = try String(contentsOf: Self.root.appendingPathComponent("Dockerfile"), encoding: .utf8)
        let lines = dockerfile.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
        #expect(lines.contains("ARG VERSION=\(toolVersion)"))
        #expect(lines.contains("USER 65532:65532"))
        #expect(lines.contains(#"ENTRYPOINT ["pachmigrate"]"#))
        #expect(lines.contains("FROM debian:bookworm-slim"))
        // The runtime stage installs exactly the list Scripts/image-check builds its rootfs from.
        #expect(dockerfile.contains("COPY deploy/image-packages.txt"))
        #expect(dockerfile.contains("docker build -t \(Self.defaultImage) ."))
        let readme = try String(contentsOf: Self.root.appendingPathComponent("README.md"), encoding: .utf8)
        #expect(readme.contains("docker build -t \(Self.defaultImage) ."))
    }
}
