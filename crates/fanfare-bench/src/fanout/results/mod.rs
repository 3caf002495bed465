//! The fanout benchmark's figures: what each window measured (delivery, latency, CPU per
//! delivery), each process's memory with and without streams, W2's ([`w2`], judged by
//! [`sustain`]) and W3's results. The report section is laid out in [`section`] and judged
//! against the goals in [`goals`].

mod goals;
mod section;
mod sustain;
mod w2;

use std::collections::BTreeMap;
use std::time::Duration;

use super::FanoutArgs;
use super::jobs::JobRun;
use super::load::Sent;
use super::probe::{Role, Spent};
use super::tally::{Health, Received};
use crate::report::count;

pub(super) use w2::{W2Run, W2Window, messages_processes_label};

/// Which system a measurement is of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum System {
    /// Fanfare: SendMessage → commit → publish to Redis → fanout processes → Subscribe
    /// streams.
    Fanfare,
    /// Raw Redis pub/sub: PUBLISH → N subscriber connections.
    Redis,
    /// The minimal tonic streaming server: Publish → broadcast → N streams.
    Minimal,
}

impl System {
    fn label(self) -> &'static str {
        match self {
            Self::Fanfare => "Fanfare",
            Self::Redis => "raw Redis pub/sub",
            Self::Minimal => "minimal tonic server",
        }
    }

    /// The process whose CPU counts as "the server".
    fn server(self) -> Role {
        match self {
            Self::Fanfare => Role::Fanout,
            Self::Redis => Role::Redis,
            Self::Minimal => Role::Minimal,
        }
    }
}

/// How the senders sent.
#[derive(Debug, Clone, Copy)]
pub(super) enum Load {
    /// Open loop: `senders` senders, one message every `period` each.
    Fixed {
        /// Senders.
        senders: u32,
        /// Time between one sender's messages.
        period: Duration,
    },
    /// Closed loop: `slots` messages in flight end to end.
    Saturation {
        /// Messages in flight.
        slots: u32,
    },
}

impl Load {
    fn label(&self) -> String {
        match self {
            Self::Fixed { senders, period } => {
                let rate = f64::from(*senders) / period.as_secs_f64();
                format!("fixed, {} msgs/s", trim(rate))
            }
            Self::Saturation { slots } => format!("saturation, {slots} in flight"),
        }
    }

    fn is_fixed(&self) -> bool {
        matches!(self, Self::Fixed { .. })
    }
}

/// One measured window.
#[derive(Debug)]
pub(super) struct Measurement {
    /// Of what.
    pub system: System,
    /// Receivers (streams or subscriber connections).
    pub streams: usize,
    /// How it was loaded.
    pub load: Load,
    /// The measured window's length.
    pub measured: Duration,
    /// What the senders did.
    pub sent: Sent,
    /// Deliveries the sent messages should have made.
    pub expected: u64,
    /// Whether every expected delivery arrived before the drain gave up.
    pub complete: bool,
    /// What the receivers got.
    pub received: Received,
    /// What went wrong on the receivers during this window.
    pub health: Health,
    /// CPU over the window (from its first send to its last delivery).
    pub spent: Spent,
}

impl Measurement {
    fn msgs_per_second(&self) -> f64 {
        self.sent.measured as f64 / self.measured.as_secs_f64()
    }

    fn lost(&self) -> u64 {
        self.expected.saturating_sub(self.received.deliveries)
    }

    fn micros_per_delivery(&self, micros: f64) -> f64 {
        micros / self.received.deliveries.max(1) as f64
    }

    fn server_micros(&self) -> f64 {
        self.micros_per_delivery(self.spent.micros(self.system.server()))
    }

    fn problems(&self) -> u64 {
        self.lost() + self.health.out_of_order + self.health.holes
    }

    /// One line for the log.
    pub(super) fn summary(&self) -> String {
        format!(
            "fanout: {} N={} {}: {:.1} msgs/s, {:.0} deliveries/s, p50 {:.2} ms p99 {:.2} ms max {:.1} ms, \
             lost {} out-of-order {} holes {}, server {:.2} µs/delivery, bench {:.2} µs/delivery, {}{}",
            self.system.label(),
            self.streams,
            self.load.label(),
            self.msgs_per_second(),
            self.received.rate(),
            self.received.percentile_ms(50.0),
            self.received.percentile_ms(99.0),
            self.received.max_ms(),
            self.lost(),
            self.health.out_of_order,
            self.health.holes,
            self.server_micros(),
            self.micros_per_delivery(self.spent.micros(Role::Bench)),
            self.spent.describe(),
            self.sent.first_error.as_deref().map(|error| format!(", first send error: {error}")).unwrap_or_default(),
        )
    }

    fn latency_row(&self, first: String) -> Vec<String> {
        vec![
            first,
            self.system.label().to_owned(),
            self.load.label(),
            format!("{:.1}", self.msgs_per_second()),
            count(self.received.rate().round() as u64),
            ms(self.received.percentile_ms(50.0)),
            ms(self.received.percentile_ms(99.0)),
            ms(self.received.max_ms()),
            count(self.lost()),
            count(self.health.out_of_order),
        ]
    }

    fn cpu_row(&self, first: String) -> Vec<String> {
        let per = |role: Role| format!("{:.2}", self.micros_per_delivery(self.spent.micros(role)));
        let fanfare_all = match self.system {
            System::Fanfare => format!("{:.2}", self.micros_per_delivery(self.spent.fanfare_micros())),
            System::Redis | System::Minimal => String::new(),
        };
        let redis = match self.system {
            System::Fanfare | System::Redis => per(Role::Redis),
            System::Minimal => String::new(),
        };
        let postgres = match self.system {
            System::Fanfare => per(Role::Postgres),
            System::Redis | System::Minimal => String::new(),
        };
        vec![
            first,
            self.system.label().to_owned(),
            self.load.label(),
            format!("{:.2}", self.server_micros()),
            fanfare_all,
            redis,
            postgres,
            per(Role::Bench),
            self.spent.describe(),
        ]
    }
}

/// A process's memory before and after streams opened.
#[derive(Debug)]
pub(super) struct Memory {
    /// Of what.
    pub system: System,
    /// RSS before any stream opened (bytes).
    pub idle: u64,
    /// RSS with every stream open, before the load (bytes).
    pub open: u64,
    /// RSS after the windows, streams still open (bytes).
    pub after: u64,
    /// How long opening every stream (or subscriber connection) took.
    pub opened_in: Duration,
}

impl Memory {
    fn per_stream(&self, streams: usize) -> f64 {
        self.open.saturating_sub(self.idle) as f64 / streams.max(1) as f64
    }

    fn row(&self, first: String, streams: usize) -> Vec<String> {
        vec![
            first,
            self.system.label().to_owned(),
            mib(self.idle),
            mib(self.open),
            format!("{:.2}", self.per_stream(streams) / 1024.0),
            mib(self.after),
            format!("{:.1} s", self.opened_in.as_secs_f64()),
        ]
    }
}

/// W1 at one number of streams.
#[derive(Debug)]
pub(super) struct W1Size {
    /// Member streams.
    pub streams: usize,
    /// Fanfare's windows, then the baselines'.
    pub measurements: Vec<Measurement>,
    /// Memory per system.
    pub memory: Vec<Memory>,
    /// What the fanout processes counted, and anything else worth saying.
    pub notes: Vec<String>,
}

impl W1Size {
    fn find(&self, system: System, fixed: bool) -> Option<&Measurement> {
        self.measurements.iter().find(|m| m.system == system && m.load.is_fixed() == fixed)
    }

    fn memory_of(&self, system: System) -> Option<&Memory> {
        self.memory.iter().find(|memory| memory.system == system)
    }
}

/// Everything the benchmark measured.
#[derive(Debug)]
pub(super) struct Results {
    args: FanoutArgs,
    redis_visible: bool,
    /// W1, per number of streams.
    pub w1: Vec<W1Size>,
    /// W2, once per number of messages processes.
    pub w2: Vec<W2Run>,
    /// W3.
    pub w3: Option<JobRun>,
    /// Warnings and errors the services logged, by message.
    pub problems: Vec<(String, usize)>,
}

/// Notes on what the fanout processes' counters did between two reads: deliveries, and
/// every sign of trouble (overflowing inboxes, catch-ups from the log, bus gaps).
pub(super) fn counter_notes(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>) -> Vec<String> {
    let delta = |name: &str| after.get(name).copied().unwrap_or(0.0) - before.get(name).copied().unwrap_or(0.0);
    let mut parts = vec![format!(
        "dispatched to inboxes {}, sent on streams {}",
        count(delta("fanfare_fanout_dispatched_total").max(0.0) as u64),
        count(delta("fanfare_fanout_deliveries_total").max(0.0) as u64)
    )];
    let troubles = [
        ("fanfare_fanout_stream_overflows_total", "inbox overflows"),
        ("fanfare_fanout_gap_repairs_total{reason=\"jump\"}", "catch-ups after a hole"),
        ("fanfare_fanout_gap_repairs_total{reason=\"overflow\"}", "catch-ups after an overflow"),
        ("fanfare_fanout_gap_repairs_total{reason=\"bus\"}", "catch-ups after a bus gap"),
        ("fanfare_fanout_bus_gaps_total", "bus gaps"),
        ("fanfare_fanout_bad_payloads_total", "undecodable payloads"),
    ];
    for (name, label) in troubles {
        let value = delta(name);
        if value > 0.0 {
            parts.push(format!("{label} {}", count(value as u64)));
        }
    }
    vec![format!("fanout counters over these windows: {}", parts.join(", "))]
}

impl Results {
    /// Empty results of a run with `args`.
    pub(super) fn new(args: FanoutArgs, redis_visible: bool) -> Self {
        Self { args, redis_visible, w1: Vec::new(), w2: Vec::new(), w3: None, problems: Vec::new() }
    }
}

/// The measurements in table order: Fanfare, raw Redis, minimal; fixed before saturation.
fn ordered(measurements: &[Measurement]) -> Vec<&Measurement> {
    let mut sorted: Vec<&Measurement> = measurements.iter().collect();
    let rank = |m: &Measurement| {
        let system = match m.system {
            System::Fanfare => 0,
            System::Redis => 1,
            System::Minimal => 2,
        };
        (usize::from(!m.load.is_fixed()), system)
    };
    sorted.sort_by_key(|m| rank(m));
    sorted
}
/// Notes on one window's trouble: failed sends, stalls, holes, reconnects.
fn window_notes(m: &Measurement, scenario: &str) -> Vec<String> {
    let mut notes = Vec::new();
    let what = format!("{scenario}, {}, {}", m.system.label(), m.load.label());
    if m.sent.failed > 0 {
        notes.push(format!(
            "{what}: {} sends failed (first: {}).",
            count(m.sent.failed),
            m.sent.first_error.as_deref().unwrap_or("?")
        ));
    }
    if m.sent.stalled > 0 {
        notes.push(format!("{what}: {} messages had not reached every receiver after 5 s.", count(m.sent.stalled)));
    }
    let health = &m.health;
    if health.holes + health.resyncs + health.reconnects + health.ended > 0 {
        notes.push(format!(
            "{what}: holes {}, resync frames {}, reconnect frames {}, streams ended {}.",
            health.holes, health.resyncs, health.reconnects, health.ended
        ));
    }
    if !m.complete {
        notes.push(format!("{what}: {} deliveries never arrived.", count(m.lost())));
    }
    notes
}
fn seconds(duration: Option<Duration>) -> String {
    duration.map_or_else(|| "n/a".to_owned(), |duration| format!("{:.2} s", duration.as_secs_f64()))
}

fn ms(value: f64) -> String {
    match value {
        value if value < 10.0 => format!("{value:.2} ms"),
        value if value < 100.0 => format!("{value:.1} ms"),
        value => format!("{value:.0} ms"),
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64)
}

fn trim(value: f64) -> String {
    if (value - value.round()).abs() < 1e-9 { format!("{value:.0}") } else { format!("{value:.2}") }
}

fn ratio(value: f64, base: f64) -> String {
    if base <= 0.0 { "n/a".to_owned() } else { format!("{:.2}x the minimal server's", value / base) }
}
