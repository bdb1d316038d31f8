import Foundation
import PachmigrateCLI
import Testing
import Yams

/// deploy/ must run as written, in both its variants:
/// - the default (`kubectl apply -k deploy/base`, `deploy/pachd-init-container.yaml`) against
///   etcd as a default `pachctl deploy` serves it: plain `http://etcd:2379`, no auth, so
///   nothing may need a Secret (an unmet Secret reference keeps the pod from starting);
/// - the overlay (`kubectl apply -k deploy/overlays/tls-auth`, its own init container patch)
///   against etcd with TLS and auth: https, and the CA, client certificate and key, user and
///   password each wired to a key of the Secret the overlay defines.
/// In both, every container runs the image the Dockerfile builds as non-root on a read-only
/// root, has what each command writes to (TMPDIR on an emptyDir, the backup on a PVC, under
/// a name no later attempt collides with), and the Job fails or retries exactly as the
/// CLI's exit codes say.
///
/// kubectl is not a dependency of the suite: the kustomizations are rendered here, by a
/// deliberately small kustomize (resources, and strategic-merge patches found by kind and
/// name) that refuses any other kustomize feature, so a manifest cannot use one this test
/// would silently ignore.
@Suite("deploy/ manifests and the Dockerfile")
struct DeployManifestTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    static let deploy = root.appendingPathComponent("deploy")
    static let defaultImage = "pachmigrate:\(toolVersion)"

    typealias Document = [String: Any]

    struct ManifestError: Error, CustomStringConvertible {
        var description: String
    }

    static func load(_ relativePath: String) throws -> [(file: String, document: Document)] {
        let text = try String(contentsOf: deploy.appendingPathComponent(relativePath), encoding: .utf8)
        return try Yams.load_all(yaml: text).compactMap { $0 as? Document }.map { (relativePath, $0) }
    }

    /// What `kubectl kustomize deploy/<dir>` renders, for the features deploy/ uses, and the
    /// files it read (relative to deploy/).
    static func kustomize(_ dir: String) throws -> (documents: [(file: String, document: Document)], files: Set<String>) {
        let kustomizationPath = normalized(dir + "/kustomization.yaml")
        guard let kustomization = try load(kustomizationPath).first?.document else {
            throw ManifestError(description: "\(kustomizationPath): no document")
        }
        let understood: Set<String> = ["apiVersion", "kind", "resources", "patches"]
        guard Set(kustomization.keys).isSubset(of: understood) else {
            throw ManifestError(description: "\(kustomizationPath): \(Set(kustomization.keys).subtracting(understood)) not understood here")
        }
        var documents: [(file: String, document: Document)] = []
        var files: Set<String> = [kustomizationPath]
        for resource in kustomization["resources"] as? [String] ?? [] {
            let path = normalized(dir + "/" + resource)
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: deploy.appendingPathComponent(path).path, isDirectory: &isDirectory) else {
                throw ManifestError(description: "\(kustomizationPath): resource \(resource) does not exist")
            }
            if isDirectory.boolValue {
                let base = try kustomize(path)
                documents += base.documents
                files.formUnion(base.files)
            } else {
                documents += try load(path)
                files.insert(path)
            }
        }
        for entry in kustomization["patches"] as? [Any] ?? [] {
            // Only `path:` whose document names its target (kind and name), as deploy/ writes them.
            guard let entry = entry as? [String: Any], Set(entry.keys) == ["path"], let patchFile = entry["path"] as? String else {
                throw ManifestError(description: "\(kustomizationPath): patch \(entry) not understood here")
            }
            let path = normalized(dir + "/" + patchFile)
            files.insert(path)
            for (_, patch) in try load(path) {
                let matches = documents.indices.filter { identity(documents[$0].document) == identity(patch) }
                guard matches.count == 1, let index = matches.first else {
                    throw ManifestError(description: "\(path): \(identity(patch)) matches \(matches.count) resources")
                }
                guard let merged = strategicMerge(documents[index].document, patch, field: nil) as? Document else {
                    throw ManifestError(description: "\(path): not a map")
                }
                documents[index].document = merged
                documents[index].file += " + \(path)"
            }
        }
        return (documents, files)
    }

    /// A path relative to deploy/ with `.` and `..` resolved (`overlays/tls-auth/../../base` is `base`).
    static func normalized(_ path: String) -> String {
        var parts: [Substring] = []
        for part in path.split(separator: "/") where part != "." {
            if part == "..", let last = parts.last, last != ".." { parts.removeLast() } else { parts.append(part) }
        }
        return parts.joined(separator: "/")
    }

    static func identity(_ document: Document) -> String {
        "\(document["apiVersion"] ?? "?") \(document["kind"] ?? "?") \((document["metadata"] as? Document)?["name"] ?? "?")"
    }

    /// Kubernetes' strategic merge for the fields deploy/ patches: maps merge key by key,
    /// lists of containers, env and volumes merge by `name`, volumeMounts by `mountPath`,
    /// and every other list (args among them) is replaced whole.
    static func strategicMerge(_ base: Any, _ patch: Any, field: String?) -> Any {
        if let base = base as? Document, let patch = patch as? Document {
            var merged = base
            for (key, value) in patch { merged[key] = base[key].map { strategicMerge($0, value, field: key) } ?? value }
            return merged
        }
        let mergeKeys = ["containers": "name", "initContainers": "name", "env": "name", "volumes": "name", "volumeMounts": "mountPath"]
        if let field, let mergeKey = mergeKeys[field], var merged = base as? [Document], let patch = patch as? [Document] {
            for item in patch {
                if let i = merged.firstIndex(where: { $0[mergeKey] as? String == item[mergeKey] as? String }) {
                    merged[i] = strategicMerge(merged[i], item, field: nil) as? Document ?? item
                } else {
                    merged.append(item)
                }
            }
            return merged
        }
        return patch
    }

    /// One way deploy/ is meant to be applied: what `kubectl apply -k` applies, and the patch
    /// `kubectl patch deployment pachd --patch-file` adds to pachd.
    struct Variant {
        var name: String
        var documents: [(file: String, document: Document)]
        var files: Set<String>
        var secured: Bool

        static func all() throws -> [Variant] {
            let base = try kustomize("base")
            let overlay = try kustomize("overlays/tls-auth")
            let plainInit = "pachd-init-container.yaml"
            let securedInit = "overlays/tls-auth/pachd-init-container.yaml"
            // Reaches neither etcd nor pachd: the same for both.
            let copy = "backup-copy-pod.yaml"
            return [
                Variant(
                    name: "default", documents: base.documents + (try load(plainInit)) + (try load(copy)),
                    files: base.files.union([plainInit, copy]), secured: false),
                Variant(
                    name: "tls-auth", documents: overlay.documents + (try load(securedInit)) + (try load(copy)),
                    files: overlay.files.union([securedInit, copy]), secured: true),
            ]
        }

        func resources(_ kind: String) -> [Document] { documents.filter { $0.document["kind"] as? String == kind }.map(\.document) }
        var secrets: [Document] { resources("Secret") }
        var claims: Set<String> { Set(resources("PersistentVolumeClaim").compactMap { ($0["metadata"] as? Document)?["name"] as? String }) }
    }

    /// A pod spec in a document: a Pod's, a Job's template, or a patch of a Deployment's template.
    struct PodSpec {
        var file: String
        var spec: Document
        var containers: [Document] {
            ((spec["initContainers"] as? [Document]) ?? []) + ((spec["containers"] as? [Document]) ?? [])
        }
        /// The containers that run pachmigrate (the image's entrypoint, not a `command` of their own).
        var pachmigrateContainers: [Document] { containers.filter { $0["command"] == nil } }
        var volumes: [String: Document] {
            Dictionary(((spec["volumes"] as? [Document]) ?? []).map { ($0["name"] as? String ?? "", $0) }) { a, _ in a }
        }
        /// mountPath → volume, for one container's mounts.
        func mounts(_ container: Document) -> [(path: String, volume: Document)] {
            ((container["volumeMounts"] as? [Document]) ?? []).compactMap { mount in
                guard let path = mount["mountPath"] as? String, let name = mount["name"] as? String, let volume = volumes[name]
                else { return nil }
                return (path, volume)
            }
        }
    }

    static func podSpecs(_ documents: [(file: String, document: Document)]) -> [PodSpec] {
        documents.compactMap { file, document in
            if document["kind"] as? String == "Pod" { return (document["spec"] as? Document).map { PodSpec(file: file, spec: $0) } }
            let template = (document["spec"] as? Document)?["template"] as? Document
            return (template?["spec"] as? Document).map { PodSpec(file: file, spec: $0) }
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

    /// A Kubernetes quantity or a byte size flag in binary units ("5Gi", "512Mi", "2GiB").
    static func bytes(_ text: String) -> Int64? {
        let units: [(String, Int64)] = [("Ki", 1 << 10), ("Mi", 1 << 20), ("Gi", 1 << 30), ("Ti", 1 << 40)]
        let trimmed = text.hasSuffix("B") ? String(text.dropLast()) : text
        for (suffix, factor) in units where trimmed.hasSuffix(suffix) {
            return Int64(trimmed.dropLast(suffix.count)).map { $0 * factor }
        }
        return Int64(trimmed)
    }

    static func env(_ container: Document) -> [String: Document] {
        Dictionary(((container["env"] as? [Document]) ?? []).map { ($0["name"] as? String ?? "", $0) }) { a, _ in a }
    }

    static func secretKeyRef(_ variable: Document?) -> Document? {
        (variable?["valueFrom"] as? Document)?["secretKeyRef"] as? Document
    }

    /// A setting given as a flag or as its environment variable (flags win, as in the CLI).
    static func setting(_ flag: String, _ variable: String, args: [String], env: [String: Document]) -> String? {
        argument(flag, in: args) ?? env[variable]?["value"] as? String
    }

    static func isUnder(_ path: String, _ directory: String) -> Bool {
        path.hasPrefix(directory.hasSuffix("/") ? directory : directory + "/")
    }

    /// Every manifest under deploy/ is one the variants apply: none is left out of the checks.
    @Test func everyManifestBelongsToAVariant() throws {
        let variants = try Variant.all()
        let used = variants.reduce(into: Set<String>()) { $0.formUnion($1.files) }
        let enumerator = try #require(FileManager.default.enumerator(atPath: Self.deploy.path))
        let manifests = Set(enumerator.compactMap { $0 as? String }.filter { $0.hasSuffix(".yaml") || $0.hasSuffix(".yml") })
        #expect(manifests == used)
    }

    /// The default variant needs nothing a default `pachctl deploy` lacks: plain HTTP to the
    /// `etcd` Service, no Secret, nothing to replace.
    @Test func defaultVariantRunsAgainstADefaultPachctlDeploy() throws {
        let variant = try #require(try Variant.all().first { !$0.secured })
        #expect(variant.secrets.isEmpty)
        for file in variant.files {
            let text = try String(contentsOf: Self.deploy.appendingPathComponent(file), encoding: .utf8)
            #expect(!text.contains("REPLACE"), "\(file) has a placeholder")
        }
        let pods = Self.podSpecs(variant.documents)
        #expect(pods.count == 3)
        for pod in pods {
            #expect(!pod.volumes.values.contains { $0["secret"] != nil || $0["projected"] != nil }, "\(pod.file): a secret volume")
            for container in pod.pachmigrateContainers {
                let name = "\(pod.file): \(container["name"] ?? "?")"
                let args = container["args"] as? [String] ?? []
                let env = Self.env(container)
                #expect(Self.setting("endpoints", "ETCD_ENDPOINTS", args: args, env: env) == "http://etcd:2379", "\(name)")
                // A Secret reference that is not optional keeps the container from starting.
                for (variable, value) in env {
                    if let ref = Self.secretKeyRef(value) { #expect(ref["optional"] as? Bool == true, "\(name): \(variable)") }
                }
                for source in container["envFrom"] as? [Document] ?? [] {
                    if let ref = source["secretRef"] as? Document { #expect(ref["optional"] as? Bool == true, "\(name): envFrom") }
                }
                // No TLS or auth settings: they would name files or a user etcd does not have.
                for (flag, variable) in [("cacert", "ETCDCTL_CACERT"), ("cert", "ETCDCTL_CERT"), ("key", "ETCDCTL_KEY"), ("user", "ETCDCTL_USER")] {
                    #expect(Self.argument(flag, in: args) == nil && env[variable] == nil, "\(name): \(flag)")
                }
                #expect(Self.argument("password-file", in: args) == nil && env["ETCDCTL_PASSWORD"] == nil, "\(name): password")
            }
        }
    }

    /// The overlay reaches etcd over https with the CA, client certificate and key, user and
    /// password all from the Secret it defines, mounted read-only.
    @Test func overlayWiresTLSAndAuthFromItsSecret() throws {
        let variant = try #require(try Variant.all().first(where: \.secured))
        #expect(variant.secrets.count == 1)
        let pods = Self.podSpecs(variant.documents)
        #expect(pods.count == 3)
        for pod in pods {
            for container in pod.pachmigrateContainers {
                let name = "\(pod.file): \(container["name"] ?? "?")"
                let args = container["args"] as? [String] ?? []
                let env = Self.env(container)
                #expect(Self.setting("endpoints", "ETCD_ENDPOINTS", args: args, env: env) == "https://etcd:2379", "\(name)")

                let secretMounts = pod.mounts(container).filter { $0.volume["secret"] != nil }
                #expect(secretMounts.count == 1, "\(name)")
                let mount = try #require(secretMounts.first, "\(name)")
                #expect(
                    ((container["volumeMounts"] as? [Document]) ?? []).contains {
                        $0["mountPath"] as? String == mount.path && $0["readOnly"] as? Bool == true
                    }, "\(name): the Secret is mounted read-only")
                let secretName = (mount.volume["secret"] as? Document)?["secretName"] as? String
                let secret = try #require(
                    variant.secrets.first { ($0["metadata"] as? Document)?["name"] as? String == secretName },
                    "\(name): secret \(secretName ?? "none") is not in the overlay")
                let keys = Set(((secret["stringData"] as? Document) ?? [:]).keys).union(((secret["data"] as? Document) ?? [:]).keys)

                // The CA, certificate, key and password file: each a key of the Secret, under its mount.
                let files = [
                    Self.setting("cacert", "ETCDCTL_CACERT", args: args, env: env),
                    Self.setting("cert", "ETCDCTL_CERT", args: args, env: env),
                    Self.setting("key", "ETCDCTL_KEY", args: args, env: env),
                    Self.argument("password-file", in: args),
                ]
                #expect(!files.contains(nil), "\(name): cacert, cert, key, password-file: \(files)")
                for file in files.compactMap({ $0 }) {
                    #expect(Self.isUnder(file, mount.path), "\(name): \(file)")
                    #expect(keys.contains(String(file.dropFirst(mount.path.count + 1))), "\(name): \(file) is not a key of the Secret")
                }
                // The user: from the Secret's key, or literal.
                if let ref = Self.secretKeyRef(env["ETCDCTL_USER"]) {
                    #expect(ref["name"] as? String == secretName, "\(name)")
                    #expect(keys.contains(ref["key"] as? String ?? ""), "\(name)")
                } else {
                    #expect(Self.setting("user", "ETCDCTL_USER", args: args, env: env)?.isEmpty == false, "\(name): no user")
                }
            }
        }
    }

    @Test func everyContainerRunsTheDefaultImageAsNonRootWithWhatItNeeds() throws {
        for variant in try Variant.all() {
            let pods = Self.podSpecs(variant.documents)
            var commands: [String] = []
            for pod in pods {
                let podSecurity = pod.spec["securityContext"] as? Document ?? [:]
                for container in pod.containers {
                    let name = "\(variant.name): \(pod.file): \(container["name"] ?? "?")"
                    let args = container["args"] as? [String] ?? []
                    let command = ((container["command"] as? [String]) ?? args).first ?? ""
                    commands.append(command)
                    #expect(container["image"] as? String == Self.defaultImage, "\(name)")

                    // The container's own securityContext wins over the pod's, as in Kubernetes.
                    let security = podSecurity.merging(container["securityContext"] as? Document ?? [:]) { $1 }
                    #expect(security["runAsNonRoot"] as? Bool == true, "\(name)")
                    #expect(security["runAsUser"] as? Int == 65532, "\(name)")
                    #expect(security["readOnlyRootFilesystem"] as? Bool == true, "\(name)")

                    let resources = container["resources"] as? Document ?? [:]
                    for kind in ["requests", "limits"] {
                        let values = resources[kind] as? Document ?? [:]
                        #expect(values["memory"] != nil && values["cpu"] != nil, "\(name): \(kind)")
                    }

                    let mounts = pod.mounts(container)
                    let env = Self.env(container)
                    // Commands that scan spill their sort runs to TMPDIR: an emptyDir.
                    if ["migrate", "plan", "verify", "backup", "restore"].contains(command) {
                        let tmp = try #require(env["TMPDIR"]?["value"] as? String, "\(name)")
                        let scratch = try #require(
                            mounts.first { $0.path == tmp }?.volume["emptyDir"] as? Document, "\(name): TMPDIR \(tmp) is no emptyDir")
                        // The sort holds values (as read, and as written): up to twice the data
                        // under the roots, which etcd's quota bounds. A smaller emptyDir or
                        // ephemeral-storage limit gets the pod evicted mid-scan, every attempt.
                        let quota = try #require(Self.bytes(Self.argument("etcd-quota", in: args) ?? "2GiB"), "\(name)")
                        let sizeLimit = try #require(Self.bytes(scratch["sizeLimit"] as? String ?? ""), "\(name): no sizeLimit")
                        let ephemeral = (resources["limits"] as? Document)?["ephemeral-storage"] as? String
                        let storageLimit = try #require(Self.bytes(ephemeral ?? ""), "\(name): no ephemeral-storage limit")
                        #expect(sizeLimit >= 2 * quota && storageLimit > sizeLimit, "\(name): \(sizeLimit), \(storageLimit), \(quota)")
                    }
                    if command == "migrate" {
                        // The backup must outlive the pod (a PVC of this variant), and each pod
                        // writes its own: `migrate` refuses an existing backup file, so a fixed
                        // name would fail every attempt after one that wrote it without
                        // recording its run. Kubernetes expands $(VAR) in args from the env.
                        let backup = try #require(Self.argument("backup", in: args), "\(name): no --backup")
                        let podNameVariables = env.filter {
                            (($0.value["valueFrom"] as? Document)?["fieldRef"] as? Document)?["fieldPath"] as? String == "metadata.name"
                        }.keys
                        #expect(podNameVariables.contains { backup.contains("$(\($0))") }, "\(name): backup \(backup) does not name the pod")
                        let claim = mounts.first { Self.isUnder(backup, $0.path) }
                            .flatMap { ($0.volume["persistentVolumeClaim"] as? Document)?["claimName"] as? String }
                        #expect(claim.map(variant.claims.contains) == true, "\(name): backup \(backup)")
                    }
                    if command == "wait" { #expect(Self.argument("version", in: args) == "1.5.0", "\(name)") }
                    // The copy pod only reads the backups: its claim and mount are read-only.
                    if command == "sleep" {
                        let claims = mounts.filter { $0.volume["persistentVolumeClaim"] != nil }
                        #expect(!claims.isEmpty, "\(name)")
                        for claim in claims {
                            let source = claim.volume["persistentVolumeClaim"] as? Document
                            #expect(variant.claims.contains(source?["claimName"] as? String ?? ""), "\(name)")
                            #expect(source?["readOnly"] as? Bool == true, "\(name)")
                            #expect(
                                ((container["volumeMounts"] as? [Document]) ?? []).contains {
                                    $0["mountPath"] as? String == claim.path && $0["readOnly"] as? Bool == true
                                }, "\(name)")
                        }
                    }
                }
            }
            #expect(commands.sorted() == ["migrate", "sleep", "wait"], "\(variant.name)")
        }
    }

    /// FailJob for every code that needs a person, never for one a rerun can get past, and
    /// success nowhere: read from the CLI's exit-code table, not a copy of it.
    @Test func jobFailurePolicyMatchesTheExitCodes() throws {
        for variant in try Variant.all() {
            let jobs = variant.resources("Job")
            #expect(jobs.count == 1, "\(variant.name)")
            for job in jobs {
                let spec = try #require(job["spec"] as? Document)
                let pod = try #require(Self.podSpecs([("job", job)]).first)
                #expect(pod.spec["restartPolicy"] as? String == "Never")
                let containerNames = Set(pod.containers.compactMap { $0["name"] as? String })
                let rules = try #require((spec["podFailurePolicy"] as? Document)?["rules"] as? [Document])
                var codes: [String: [Int32]] = [:]
                for rule in rules {
                    guard let onExitCodes = rule["onExitCodes"] as? Document else { continue }
                    #expect(onExitCodes["operator"] as? String == "In")
                    #expect(containerNames.contains(onExitCodes["containerName"] as? String ?? ""))
                    codes[rule["action"] as? String ?? "?", default: []] += (onExitCodes["values"] as? [Int] ?? []).map(Int32.init)
                }
                let needsAPerson = ExitStatus.allCases.filter { $0 != .ok && !$0.retryable }.map(\.rawValue)
                let rerunnable = ExitStatus.allCases.filter(\.retryable).map(\.rawValue)
                #expect(codes["FailJob", default: []].sorted() == needsAPerson.sorted(), "\(variant.name)")
                // Retried: listed as Ignore or Count, or left to the default (Count).
                #expect(Set(codes["Ignore", default: []] + codes["Count", default: []]).isSubset(of: rerunnable))
                #expect(Set(codes.keys).isSubset(of: ["FailJob", "Ignore", "Count"]))
                #expect(!codes.values.joined().contains(ExitStatus.ok.rawValue))
                #expect((spec["backoffLimit"] as? Int ?? 0) > 0)
            }
        }
    }

    /// The test's kustomize must merge as Kubernetes does, or the overlay checks above prove
    /// nothing: named list items merge, new ones are added, args are replaced whole.
    @Test func strategicMergeMergesNamedListsAndReplacesOthers() throws {
        let base: Document = [
            "containers": [["name": "a", "args": ["x", "y"], "env": [["name": "E", "value": "1"], ["name": "F", "value": "2"]]]]
        ]
        let patch: Document = [
            "containers": [["name": "a", "args": ["z"], "env": [["name": "E", "value": "3"], ["name": "G", "value": "4"]]]]
        ]
        let merged = try #require(Self.strategicMerge(base, patch, field: nil) as? Document)
        let container = try #require((merged["containers"] as? [Document])?.first)
        #expect((merged["containers"] as? [Document])?.count == 1)
        #expect(container["args"] as? [String] == ["z"])
        let env = Self.env(container).mapValues { $0["value"] as? String }
        #expect(env == ["E": "3", "F": "2", "G": "4"])
    }

    /// A rollback to 1.4 takes out what the init-container patches added to pachd, by name
    /// (`kubectl apply` of 1.4's manifest would keep it, and the init container would hold a
    /// 1.4 pachd forever): the removal each patch file shows, and the one README's runbook
    /// runs, delete exactly the init containers and volumes that patch adds.
    @Test(arguments: [
        ("pachd-init-container.yaml", ["pachd-init-container.yaml", "../README.md"]),
        ("overlays/tls-auth/pachd-init-container.yaml", ["overlays/tls-auth/pachd-init-container.yaml"]),
    ])
    func rollbackTakesOutWhatThePatchAdded(patchFile: String, shownIn: [String]) throws {
        let spec = try #require(
            (((try Self.load(patchFile).first?.document)?["spec"] as? Document)?["template"] as? Document)?["spec"] as? Document)
        let names = { (list: Any?) in Set(((list as? [Document]) ?? []).compactMap { $0["name"] as? String }) }
        for source in shownIn {
            let text = try String(contentsOf: Self.deploy.appendingPathComponent(source), encoding: .utf8)
            let commands = text.split(separator: "\n").filter { $0.contains("kubectl patch deployment pachd -p '") }
            #expect(commands.count == 1, "\(source)")
            for command in commands {
                let json = try #require(command.split(separator: "'").dropFirst().first, "\(source)")
                let removal = try #require(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? Document)
                let removed = try #require(
                    ((removal["spec"] as? Document)?["template"] as? Document)?["spec"] as? Document, "\(source)")
                for field in ["initContainers", "volumes"] {
                    let entries = (removed[field] as? [Document]) ?? []
                    #expect(entries.allSatisfy { $0["$patch"] as? String == "delete" }, "\(source): \(field)")
                    #expect(names(entries) == names(spec[field]), "\(source): \(field)")
                }
            }
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
