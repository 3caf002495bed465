//! Where the CPU went during a window, from `/proc`: this process (the service under test
//! and the load generator, with the service processes it started, if any), every `postgres`
//! process, everything else, and idle, each as an average number of cores. "Everything
//! else" is how busy the machine was with other work. Where a service runs inside this
//! process on a runtime of its own (the messages benchmark), its threads' share of this
//! process is counted apart too, by thread name.

use std::time::Instant;

/// Cumulative CPU counters at one instant, in clock ticks.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CpuSnapshot {
    at: Instant,
    machine_total: u64,
    machine_idle: u64,
    process: u64,
    service_threads: u64,
    postgres: u64,
}

/// Average cores used over a window.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct CpuUsage {
    /// The benchmark process: service and load generator (and its child processes).
    pub process: f64,
    /// Of `process`, the threads named [`SERVICE_THREAD_NAME`]: a service run on a tokio
    /// runtime of its own inside this process (0 when there is none).
    pub service: f64,
    /// All `postgres` processes (including other databases on the same server).
    pub postgres: f64,
    /// Every other process on the machine.
    pub other: f64,
    /// Idle (and I/O wait).
    pub idle: f64,
}

impl CpuSnapshot {
    /// Reads the counters now; `None` where `/proc` is not available.
    pub(crate) fn take() -> Option<Self> {
        let at = Instant::now();
        let (machine_total, machine_idle) = machine_ticks()?;
        let own = process_ticks("self")?;
        // Services run as child processes (the fanout benchmark) count as the benchmark's:
        // the live ones by their own counters, the exited ones in ours once reaped.
        let process = own.own + own.reaped_children + children_ticks(std::process::id());
        let service_threads = named_thread_ticks(SERVICE_THREAD_NAME);
        let postgres = postgres_ticks();
        Some(Self { at, machine_total, machine_idle, process, service_threads, postgres })
    }

    /// Usage between `self` and the later `end`, spread over `cores` cores.
    pub(crate) fn until(&self, end: &CpuSnapshot, cores: usize) -> CpuUsage {
        let total = end.machine_total.saturating_sub(self.machine_total).max(1) as f64;
        let share = |ticks: u64| ticks as f64 / total * cores as f64;
        let idle = share(end.machine_idle.saturating_sub(self.machine_idle));
        let process = share(end.process.saturating_sub(self.process));
        let service = share(end.service_threads.saturating_sub(self.service_threads)).min(process);
        let postgres = share(end.postgres.saturating_sub(self.postgres));
        let other = (cores as f64 - idle - process - postgres).max(0.0);
        debug_assert!(end.at >= self.at, "snapshots in order");
        CpuUsage { process, service, postgres, other, idle }
    }
}

impl CpuUsage {
    /// `bench 1.1 · pg 0.7 · other 0.1 · idle 0.1` (cores).
    pub(crate) fn describe(&self) -> String {
        format!("bench {:.2} · pg {:.2} · other {:.2} · idle {:.2}", self.process, self.postgres, self.other, self.idle)
    }
}

/// The name of the threads of a service's own runtime inside this process (at most 15
/// bytes: what `/proc/<pid>/task/<tid>/comm` keeps of a thread's name).
pub(crate) const SERVICE_THREAD_NAME: &str = "bench-service";

/// CPU ticks the live threads of this process named `name` have used so far. Threads that
/// exited take their ticks with them, so a runtime measured this way keeps its threads
/// (see `thread_keep_alive`).
fn named_thread_ticks(name: &str) -> u64 {
    let Ok(entries) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .filter(|entry| std::fs::read_to_string(entry.path().join("comm")).is_ok_and(|comm| comm.trim_end() == name))
        .filter_map(|entry| std::fs::read_to_string(entry.path().join("stat")).ok())
        .filter_map(|stat| stat_ticks(&stat))
        .map(|ticks| ticks.own)
        .sum()
}

/// User and system CPU ticks process `pid` has used so far; `None` once it is gone.
pub(crate) fn process_cpu_ticks(pid: u32) -> Option<u64> {
    process_ticks(&pid.to_string()).map(|ticks| ticks.own)
}

/// CPU ticks every `postgres` process has used so far (exited backends included).
pub(crate) fn postgres_cpu_ticks() -> u64 {
    postgres_ticks()
}

/// Total and idle (idle + iowait) ticks of all CPUs, from the first line of `/proc/stat`.
fn machine_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<u64> =
        stat.lines().next()?.split_whitespace().skip(1).take(8).filter_map(|field| field.parse().ok()).collect();
    if fields.len() < 8 {
        return None;
    }
    let idle = fields[3] + fields[4];
    Some((fields.iter().sum(), idle))
}

/// A process's CPU ticks: its own, and those of its children it has reaped.
struct ProcessTicks {
    own: u64,
    reaped_children: u64,
}

/// Ticks of `/proc/<pid>/stat`; the command name may hold spaces, so fields are counted
/// from the last `)`.
fn process_ticks(pid: &str) -> Option<ProcessTicks> {
    stat_ticks(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Ticks of one `stat` line (a process's or a thread's: the same layout).
fn stat_ticks(stat: &str) -> Option<ProcessTicks> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // Fields 14..=17 of proc(5) (utime, stime, cutime, cstime) are at 11..=14 here,
    // because the slice starts at field 3.
    let field = |index: usize| fields.get(index)?.parse::<u64>().ok();
    Some(ProcessTicks { own: field(11)? + field(12)?, reaped_children: field(13)? + field(14)? })
}

/// Ticks of the live children of process `parent` (and of their reaped children).
fn children_ticks(parent: u32) -> u64 {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let parent = parent.to_string();
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().into_string().ok())
        .filter(|name| name.bytes().all(|byte| byte.is_ascii_digit()))
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // Field 4 of proc(5), the parent's pid, is the second after the command name.
            let ppid = stat[stat.rfind(')')? + 1..].split_whitespace().nth(1)?;
            (ppid == parent).then(|| process_ticks(&pid)).flatten()
        })
        .map(|ticks| ticks.own + ticks.reaped_children)
        .sum()
}

/// Ticks of every `postgres` process, including backends that have exited (counted in
/// the postmaster's reaped-children ticks).
fn postgres_ticks() -> u64 {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().into_string().ok())
        .filter(|name| name.bytes().all(|byte| byte.is_ascii_digit()))
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|comm| comm.trim_end() == "postgres")
        })
        .filter_map(|pid| process_ticks(&pid))
        .map(|ticks| ticks.own + ticks.reaped_children)
        .sum()
}
