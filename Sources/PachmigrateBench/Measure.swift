import ArgumentParser

import Glibc
import PlatformShim

/// `measure`: runs a command, then prints its wall time and peak RSS (from `wait4`'s
/// rusage, which covers exactly that child) as one `key=value` line on stdout, the
/// command's own output going to `--log`. Fails with the command's exit status.
struct Measure: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Time a command and report its peak RSS.")

    @Option(help: "Where the command's stdout and stderr go.")
    var log: String = "/dev/null"

    @Argument(parsing: .captureForPassthrough, help: "The command and its arguments (after --).")
    var command: [String]

    func run() throws {
        let argv = command.first == "--" ? Array(command.dropFirst()) : command
        guard let program = argv.first else { throw ValidationError("no command given") }

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 1, log, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)

        var cArguments = argv.map { strdup($0) } + [nil]
        defer { for pointer in cArguments { free(pointer) } }
        let clock = ContinuousClock()
        let started = clock.now
        var pid: pid_t = 0
        let spawned = posix_spawnp(&pid, program, &actions, nil, &cArguments, environ)
        guard spawned == 0 else { throw BenchError(.spawnFailed, "cannot start \(program): \(String(cString: strerror(spawned)))") }

        var status: Int32 = 0
        var usage = rusage()
        while wait4(pid, &status, 0, &usage) < 0 {
            guard errno == EINTR else { throw BenchError(.spawnFailed, "wait4: \(String(cString: strerror(errno)))") }
        }
        let elapsed = clock.now - started
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        let exitStatus = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
        // Linux reports ru_maxrss in KiB.
        let cpu =
            Double(usage.ru_utime.tv_sec) + Double(usage.ru_utime.tv_usec) / 1e6
            + Double(usage.ru_stime.tv_sec) + Double(usage.ru_stime.tv_usec) / 1e6
        print("seconds=\(seconds) cpu_seconds=\(cpu) max_rss_kib=\(usage.ru_maxrss) status=\(exitStatus)")
        if exitStatus != 0 { throw ExitCode(exitStatus) }
    }
}
