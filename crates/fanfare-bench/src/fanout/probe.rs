//! CPU time and memory of the processes a window involves, read from `/proc`: the fanout
//! processes, the groups and messages services, the baseline server, redis-server, every
//! Postgres process, and this process (the load generator and the receivers).

use std::time::Instant;

use crate::cpu::{CpuSnapshot, postgres_cpu_ticks, process_cpu_ticks};

/// Whose CPU time is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
    /// The fanout service processes.
    Fanout,
    /// The groups service.
    Groups,
    /// The messages service.
    Messages,
    /// The minimal tonic streaming server (baseline).
    Minimal,
    /// redis-server (shared with whatever else uses it).
    Redis,
    /// Every Postgres process.
    Postgres,
    /// This process: senders and receivers.
    Bench,
}

const ROLES: [Role; 7] =
    [Role::Fanout, Role::Groups, Role::Messages, Role::Minimal, Role::Redis, Role::Postgres, Role::Bench];

impl Role {
    fn index(self) -> usize {
        ROLES.iter().position(|role| *role == self).unwrap_or(0)
    }

    fn label(self) -> &'static str {
        match self {
            Self::Fanout => "fanout",
            Self::Groups => "groups",
            Self::Messages => "messages",
            Self::Minimal => "minimal",
            Self::Redis => "redis",
            Self::Postgres => "pg",
            Self::Bench => "bench",
        }
    }
}

/// The processes to watch, by pid.
#[derive(Debug, Clone, Default)]
pub(super) struct Watched {
    /// `(role, pid)` of each service process.
    pub processes: Vec<(Role, u32)>,
    /// redis-server, when its pid is known and visible.
    pub redis: Option<u32>,
}

impl Watched {
    /// Pids of `role`.
    pub(super) fn pids(&self, role: Role) -> impl Iterator<Item = u32> + '_ {
        self.processes.iter().filter(move |(owner, _)| *owner == role).map(|(_, pid)| *pid)
    }

    /// Cumulative CPU counters now.
    pub(super) fn snapshot(&self) -> Snapshot {
        let mut ticks = [0u64; ROLES.len()];
        for (role, pid) in &self.processes {
            ticks[role.index()] += process_cpu_ticks(*pid).unwrap_or(0);
        }
        if let Some(pid) = self.redis {
            ticks[Role::Redis.index()] = process_cpu_ticks(pid).unwrap_or(0);
        }
        ticks[Role::Postgres.index()] = postgres_cpu_ticks();
        ticks[Role::Bench.index()] = process_cpu_ticks(std::process::id()).unwrap_or(0);
        Snapshot { at: Instant::now(), ticks, machine: CpuSnapshot::take() }
    }

    /// Resident memory of every process of `role`, in bytes.
    pub(super) fn rss(&self, role: Role) -> u64 {
        self.pids(role).filter_map(rss_bytes).sum()
    }
}

/// Cumulative CPU counters at one instant.
#[derive(Debug, Clone, Copy)]
pub(super) struct Snapshot {
    at: Instant,
    ticks: [u64; ROLES.len()],
    machine: Option<CpuSnapshot>,
}

impl Snapshot {
    /// CPU spent from `self` to the later `end`.
    pub(super) fn until(&self, end: &Snapshot) -> Spent {
        let per_second = rustix::param::clock_ticks_per_second().max(1) as f64;
        let mut micros = [0f64; ROLES.len()];
        for (index, slot) in micros.iter_mut().enumerate() {
            *slot = end.ticks[index].saturating_sub(self.ticks[index]) as f64 / per_second * 1e6;
        }
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let usage = self.machine.zip(end.machine).map(|(start, finish)| start.until(&finish, cores));
        let seconds = end.at.duration_since(self.at).as_secs_f64();
        let watched_cores: f64 = micros.iter().sum::<f64>() / 1e6 / seconds.max(f64::EPSILON);
        Spent {
            seconds,
            micros,
            idle: usage.map(|usage| usage.idle),
            other: usage.map(|usage| (cores as f64 - usage.idle - watched_cores).max(0.0)),
        }
    }
}

/// CPU time spent over a window, per role.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Spent {
    /// Wall-clock length of the window.
    pub seconds: f64,
    micros: [f64; ROLES.len()],
    /// Idle cores on average, when `/proc/stat` was readable.
    pub idle: Option<f64>,
    /// Cores every process not watched used on average (other people's work on a shared
    /// machine), when `/proc/stat` was readable.
    pub other: Option<f64>,
}

impl Spent {
    /// CPU microseconds of `role`.
    pub(super) fn micros(&self, role: Role) -> f64 {
        self.micros[role.index()]
    }

    /// CPU microseconds of every Fanfare service process.
    pub(super) fn fanfare_micros(&self) -> f64 {
        self.micros(Role::Fanout) + self.micros(Role::Groups) + self.micros(Role::Messages)
    }

    /// Average cores of `role`.
    pub(super) fn cores(&self, role: Role) -> f64 {
        self.micros(role) / 1e6 / self.seconds.max(f64::EPSILON)
    }

    /// `fanout 0.52 · messages 0.10 · redis 0.05 · pg 0.20 · bench 0.60 · other 0.10 · idle
    /// 0.30`: roles that used at least 0.01 cores, then the rest of the machine and idle.
    pub(super) fn describe(&self) -> String {
        let mut parts: Vec<String> = ROLES
            .iter()
            .filter(|role| self.cores(**role) >= 0.005)
            .map(|role| format!("{} {:.2}", role.label(), self.cores(*role)))
            .collect();
        if let Some(other) = self.other {
            parts.push(format!("other {other:.2}"));
        }
        if let Some(idle) = self.idle {
            parts.push(format!("idle {idle:.2}"));
        }
        parts.join(" · ")
    }
}

/// VmRSS of process `pid`, in bytes.
pub(super) fn rss_bytes(pid: u32) -> Option<u64> {
    crate::machine::kib_field(&std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?, "VmRSS:")
}
