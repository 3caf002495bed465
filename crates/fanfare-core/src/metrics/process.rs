//! The process's own metrics, under the names Prometheus' client libraries give them
//! (`process_*`), so that standard dashboards and alerts find them: CPU time, memory, file
//! descriptors, threads and start time, read from `/proc/self` (Linux; where there is no
//! `/proc`, none are recorded).
//!
//! The exporter has no hook at scrape time, so a task reads them again every
//! [`REFRESH_INTERVAL`]; a scrape sees values at most that old.

use std::path::Path;
use std::time::Duration;

use metrics::{Unit, describe_gauge, gauge};

/// User and system CPU time the process has used, in seconds. A gauge, because the
/// `metrics` crate's counters hold whole numbers; it only grows, and `rate()` reads it as a
/// counter.
pub const CPU_SECONDS_TOTAL: &str = "process_cpu_seconds_total";
/// Resident memory (RSS), in bytes.
pub const RESIDENT_MEMORY_BYTES: &str = "process_resident_memory_bytes";
/// Virtual memory size, in bytes.
pub const VIRTUAL_MEMORY_BYTES: &str = "process_virtual_memory_bytes";
/// File descriptors open (sockets included: each connection and stream's client is one).
pub const OPEN_FDS: &str = "process_open_fds";
/// The limit on open file descriptors (`RLIMIT_NOFILE`, soft).
pub const MAX_FDS: &str = "process_max_fds";
/// Threads of the process.
pub const THREADS: &str = "process_threads";
/// When the process started, in seconds since the Unix epoch.
pub const START_TIME_SECONDS: &str = "process_start_time_seconds";

/// How often the values are read again.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(5);

/// Clock ticks per second of the times in `/proc/self/stat` (`USER_HZ`): 100 on every Linux
/// architecture; Prometheus' own procfs library assumes it too.
const TICKS_PER_SECOND: f64 = 100.0;

/// What one reading of `/proc` found; `None` where a file was missing or unreadable.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProcessSample {
    /// [`CPU_SECONDS_TOTAL`].
    pub cpu_seconds: Option<f64>,
    /// [`RESIDENT_MEMORY_BYTES`].
    pub resident_memory_bytes: Option<u64>,
    /// [`VIRTUAL_MEMORY_BYTES`].
    pub virtual_memory_bytes: Option<u64>,
    /// [`OPEN_FDS`].
    pub open_fds: Option<u64>,
    /// [`MAX_FDS`].
    pub max_fds: Option<u64>,
    /// [`THREADS`].
    pub threads: Option<u64>,
    /// [`START_TIME_SECONDS`].
    pub start_time_seconds: Option<f64>,
}

/// Describes the process metrics (help text and units); call once the recorder is installed.
pub fn describe() {
    describe_gauge!(CPU_SECONDS_TOTAL, Unit::Seconds, "Total user and system CPU time spent in seconds.");
    describe_gauge!(RESIDENT_MEMORY_BYTES, Unit::Bytes, "Resident memory size in bytes.");
    describe_gauge!(VIRTUAL_MEMORY_BYTES, Unit::Bytes, "Virtual memory size in bytes.");
    describe_gauge!(OPEN_FDS, Unit::Count, "Number of open file descriptors.");
    describe_gauge!(MAX_FDS, Unit::Count, "Maximum number of open file descriptors.");
    describe_gauge!(THREADS, Unit::Count, "Number of OS threads in the process.");
    describe_gauge!(START_TIME_SECONDS, Unit::Seconds, "Start time of the process since unix epoch in seconds.");
}

/// Records a fresh [`sample`] every [`REFRESH_INTERVAL`], the first at once. Never returns;
/// spawned by `install_metrics_exporter`.
pub async fn refresh_forever() {
    let mut ticker = tokio::time::interval(REFRESH_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        // Counting descriptors lists a directory (thousands of entries on a busy fanout pod).
        match tokio::task::spawn_blocking(sample).await {
            Ok(sample) => record(&sample),
            Err(error) => tracing::warn!(error = %error, "reading the process metrics failed"),
        }
    }
}

/// Sets the gauges to what `sample` found, leaving the others as they were.
pub fn record(sample: &ProcessSample) {
    if let Some(seconds) = sample.cpu_seconds {
        gauge!(CPU_SECONDS_TOTAL).set(seconds);
    }
    let counts = [
        (RESIDENT_MEMORY_BYTES, sample.resident_memory_bytes),
        (VIRTUAL_MEMORY_BYTES, sample.virtual_memory_bytes),
        (OPEN_FDS, sample.open_fds),
        (MAX_FDS, sample.max_fds),
        (THREADS, sample.threads),
    ];
    for (name, value) in counts {
        if let Some(value) = value {
            gauge!(name).set(value as f64);
        }
    }
    if let Some(seconds) = sample.start_time_seconds {
        gauge!(START_TIME_SECONDS).set(seconds);
    }
}

/// Reads the process's figures from `/proc` (blocking, but only on the kernel's in-memory
/// files).
pub fn sample() -> ProcessSample {
    sample_from(Path::new("/proc"))
}

/// [`sample`] from a `/proc` mounted at `proc_root` (tests pass a made-up one).
fn sample_from(proc_root: &Path) -> ProcessSample {
    let read = |name: &str| std::fs::read_to_string(proc_root.join(name)).ok();
    let stat = read("self/stat").as_deref().and_then(parse_stat);
    let boot_time = read("stat").as_deref().and_then(parse_boot_time);
    let status = read("self/status");
    let kib = |key: &str| status.as_deref().and_then(|text| status_kib(text, key)).map(|kib| kib * 1024);
    ProcessSample {
        cpu_seconds: stat.as_ref().map(|stat| (stat.user_ticks + stat.system_ticks) as f64 / TICKS_PER_SECOND),
        resident_memory_bytes: kib("VmRSS"),
        virtual_memory_bytes: kib("VmSize"),
        open_fds: std::fs::read_dir(proc_root.join("self/fd")).ok().map(|entries| entries.count() as u64),
        max_fds: read("self/limits").as_deref().and_then(max_open_files),
        threads: stat.as_ref().map(|stat| stat.threads),
        start_time_seconds: stat
            .as_ref()
            .zip(boot_time)
            .map(|(stat, boot)| boot as f64 + stat.start_ticks as f64 / TICKS_PER_SECOND),
    }
}

/// The fields of `/proc/self/stat` used here.
#[derive(Debug, PartialEq)]
struct Stat {
    user_ticks: u64,
    system_ticks: u64,
    threads: u64,
    /// After boot.
    start_ticks: u64,
}

/// `pid (comm) state ppid …`: the command may hold spaces and parentheses, so fields are
/// counted from the last `)`. Field 3 (state) is the first after it; utime is 14, stime
/// 15, num_threads 20, starttime 22 (proc(5)).
fn parse_stat(text: &str) -> Option<Stat> {
    let (_, after_command) = text.rsplit_once(')')?;
    let fields: Vec<&str> = after_command.split_whitespace().collect();
    let field = |number: usize| fields.get(number - 3)?.parse::<u64>().ok();
    Some(Stat { user_ticks: field(14)?, system_ticks: field(15)?, threads: field(20)?, start_ticks: field(22)? })
}

/// The `btime` line of `/proc/stat`: boot time in seconds since the epoch.
fn parse_boot_time(text: &str) -> Option<u64> {
    text.lines().find_map(|line| line.strip_prefix("btime")?.trim().parse().ok())
}

/// A `Key:   1234 kB` line of `/proc/self/status`, in KiB.
fn status_kib(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let value = line.strip_prefix(key)?.strip_prefix(':')?;
        value.trim().strip_suffix("kB")?.trim().parse().ok()
    })
}

/// The soft limit of `Max open files` in `/proc/self/limits` (`unlimited` counts as none).
fn max_open_files(text: &str) -> Option<u64> {
    let line = text.lines().find(|line| line.starts_with("Max open files"))?;
    line.trim_start_matches("Max open files").split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_from_the_last_parenthesis() {
        let text = "4242 (fan (fare) x) S 1 4242 4242 0 -1 4194560 1500 0 0 0 250 75 0 0 20 0 9 0 123456 \
                    1073741824 2048 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
        assert_eq!(
            parse_stat(text),
            Some(Stat { user_ticks: 250, system_ticks: 75, threads: 9, start_ticks: 123_456 })
        );
        assert_eq!(parse_stat("4242 (truncated) S 1 2"), None);
    }

    #[test]
    fn status_limits_and_boot_time_are_read() {
        let status = "Name:\tfanfare\nVmSize:\t  812344 kB\nVmRSS:\t   23456 kB\nThreads:\t9\n";
        assert_eq!(status_kib(status, "VmRSS"), Some(23_456));
        assert_eq!(status_kib(status, "VmSize"), Some(812_344));
        assert_eq!(status_kib(status, "VmSwap"), None);
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max processes             63459                63459                processes \n\
                      Max open files            1048576              1048576              files     \n";
        assert_eq!(max_open_files(limits), Some(1_048_576));
        assert_eq!(max_open_files("Max open files            unlimited            unlimited            files"), None);
        assert_eq!(parse_boot_time("cpu  1 2 3\nbtime 1765152000\nprocesses 9\n"), Some(1_765_152_000));
    }

    #[test]
    fn this_process_is_measured_where_there_is_a_proc() {
        if !Path::new("/proc/self/stat").exists() {
            return;
        }
        let sample = sample();
        assert!(sample.cpu_seconds.is_some_and(|seconds| seconds >= 0.0), "{sample:?}");
        assert!(sample.resident_memory_bytes.is_some_and(|bytes| bytes > 0), "{sample:?}");
        assert!(sample.open_fds.is_some_and(|fds| fds >= 3), "{sample:?}");
        assert!(sample.threads.is_some_and(|threads| threads >= 1), "{sample:?}");
        assert!(sample.start_time_seconds.is_some_and(|seconds| seconds > 1.0e9), "{sample:?}");
    }

    #[test]
    fn nothing_is_made_up_without_a_proc() {
        let nowhere = std::env::temp_dir().join(format!("fanfare-no-proc-{}", std::process::id()));
        assert_eq!(sample_from(&nowhere), ProcessSample::default());
    }
}
