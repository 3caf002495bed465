//! The groups benchmark's figures and how they read in the report: the goals and whether
//! they were met, the fill rate, latency at each size beside the raw baselines, and the
//! size of the membership table.

use std::time::Duration;

use super::GroupsArgs;
use super::target::Storage;
use crate::cpu::CpuUsage;
use crate::driver::{Latencies, Outcome};
use crate::report::{Section, Table, count, cpu, duration, millis, verdict};

/// The size at which the lookup goal applies.
const GOAL_SIZE: u64 = 1_000_000;
/// Goal: a member's lookup of their own membership, p99 at [`GOAL_SIZE`] members.
const LOOKUP_P99_GOAL: Duration = Duration::from_millis(2);
/// Goal: the service costs less than this many times the raw statement.
const OVERHEAD_GOAL: f64 = 2.0;

/// The load generator's place in the figures.
const CLIENT_NOTE: &str = " The load generator shares the process and the cores with the service, so the \
client side of each gRPC call (encoding, HTTP/2, decoding) counts against the service's figures; the \
baseline's client is sqlx alone.";

/// One stretch of the fill, between two checkpoints.
#[derive(Debug)]
pub(super) struct FillPhase {
    /// Members before it.
    pub from: u64,
    /// Its joins.
    pub outcome: Outcome,
}

/// A service window and its raw-statement baseline, at the same concurrency.
#[derive(Debug)]
pub(super) struct Pair {
    /// Through the service's gRPC API.
    pub service: Outcome,
    /// The statement issued directly.
    pub raw: Outcome,
}

impl Pair {
    /// Raw calls/s ÷ service calls/s: how many times the service costs the statement.
    pub(super) fn rate_ratio(&self) -> f64 {
        self.raw.rate() / self.service.rate().max(f64::EPSILON)
    }

    /// Service latency ÷ raw latency at `percentile`.
    fn latency_ratio(&self, percentile: fn(&Latencies) -> Duration) -> f64 {
        let service = percentile(&self.service.latencies).as_secs_f64();
        service / percentile(&self.raw.latencies).as_secs_f64().max(f64::EPSILON)
    }
}

/// The windows measured at one size.
#[derive(Debug)]
pub(super) struct Checkpoint {
    /// Members when the windows started.
    pub members: u64,
    /// `JoinGroup` by new users beside raw single-row INSERTs into the baseline group.
    pub join: Pair,
    /// `GetMembership` of a random member's own membership beside the raw primary-key
    /// SELECT, at the configured concurrency.
    pub lookup: Pair,
    /// The same with one call in flight, if measured.
    pub serial_lookup: Option<Pair>,
}

impl Checkpoint {
    /// `(service call, raw call, pair)` of every measured pair, in report order.
    fn pairs(&self) -> Vec<(&'static str, &'static str, &Pair)> {
        let mut pairs = vec![("JoinGroup", "raw INSERT", &self.join), ("GetMembership", "raw SELECT", &self.lookup)];
        if let Some(serial) = &self.serial_lookup {
            pairs.push(("GetMembership, 1 in flight", "raw SELECT, 1 in flight", serial));
        }
        pairs
    }
}

/// Everything the run measured.
#[derive(Debug)]
pub(super) struct Results {
    args: GroupsArgs,
    /// The fill's phases, in order.
    pub fill: Vec<FillPhase>,
    /// The measured sizes, in order.
    pub checkpoints: Vec<Checkpoint>,
    /// Set when the time limit stopped the fill at this many members.
    pub stopped_at: Option<u64>,
    /// Table sizes at the end.
    pub storage: Option<Storage>,
}

impl Results {
    /// Empty results of a run with `args`.
    pub(super) fn new(args: GroupsArgs) -> Self {
        Self { args, fill: Vec::new(), checkpoints: Vec::new(), stopped_at: None, storage: None }
    }

    /// The report section.
    pub(super) fn section(&self) -> Section {
        let mut section = Section::new("Groups: joins into one BROADCAST group, membership lookup");
        section.paragraph(self.method());
        if let Some(members) = self.stopped_at {
            section.paragraph(format!(
                "**The fill hit its time limit ({} minutes) at {} members**; larger sizes were \
                 not measured.",
                self.args.time_limit_minutes,
                count(members)
            ));
        }
        section.heading("Goals");
        section.table(self.goals());
        section.heading("Filling the group (every member a JoinGroup call)");
        section.table(self.fill_table());
        section.paragraph(self.fill_summary());
        section.heading("Latency at each size, service beside raw statement");
        section.table(self.latency_table());
        section.heading("Service ÷ raw statement");
        section.table(self.ratio_table());
        section.paragraph(
            "Rate ratio = raw calls/s ÷ service calls/s at the same number of calls in flight \
             (under a closed loop that is the ratio of mean latencies); the goal is judged on it.",
        );
        if let Some(storage) = &self.storage {
            section.heading("Storage at the end");
            section.table(storage_table(storage));
        }
        section
    }

    fn method(&self) -> String {
        let args = &self.args;
        let serial = match args.serial_lookups {
            0 => String::new(),
            lookups => format!(
                " Then {} lookups of each kind run with one call in flight (rows \"1 in flight\"): \
                 a lookup's own latency, apart from queueing behind the other calls.",
                count(lookups)
            ),
        };
        let text = format!(
            "User 1 creates a BROADCAST group (policy OPEN); users 2, 3, … each call `JoinGroup` \
             until it has {members} members, {fill} calls in flight. At {sizes} members the fill \
             pauses for four windows of {concurrency} calls in flight each: {joins} `JoinGroup` \
             calls by new users; {joins} raw single-row `INSERT INTO groups.members` statements, \
             each its own durable (autocommit) transaction, into a second group of the same \
             table; {lookups} `GetMembership` calls in which a random existing member reads their \
             own membership; {lookups} raw `SELECT … FROM groups.members WHERE group_id = $1 AND \
             user_id = $2` of random existing members ({warm} unmeasured raw lookups first warm \
             the cache). The service's pool and the baseline's each hold {pool} connections; \
             calls spread over {channels} HTTP/2 connections; the per-user change limit is off. \
             A service join is more than the insert: one statement reads the group, the caller's \
             membership and bans; a second, atomic on its own, locks the group row, inserts the \
             member, bumps the per-user and the sharded per-group counters and appends an outbox \
             row.",
            members = count(args.members),
            fill = args.fill_concurrency(),
            sizes = self.args.checkpoints().iter().map(|size| count(*size)).collect::<Vec<_>>().join(", "),
            concurrency = args.concurrency,
            joins = count(args.window_joins),
            lookups = count(args.lookups),
            warm = count(super::WARM_UP_LOOKUPS),
            pool = args.pool_size,
            channels = args.channels,
        );
        text + &serial + CLIENT_NOTE
    }

    fn goals(&self) -> Table {
        let mut table = Table::new(&["goal", "measured", "verdict"]);
        // The goal is at 1M members; a shorter run is judged at its largest size, and says so.
        let judged = self.checkpoints.iter().find(|point| point.members >= GOAL_SIZE).or(self.checkpoints.last());
        let lookup_goal = format!("GetMembership p99 < {} ms at {} members", millis(LOOKUP_P99_GOAL), count(GOAL_SIZE));
        if let Some(point) = judged {
            let lookups = [("", Some(&point.lookup)), (", 1 in flight", point.serial_lookup.as_ref())];
            for (suffix, pair) in lookups {
                let Some(pair) = pair else { continue };
                let p99 = pair.service.latencies.p99();
                let met = verdict(p99 < LOOKUP_P99_GOAL);
                table.row(vec![
                    format!("{lookup_goal}{suffix}"),
                    format!("{} at {}", duration(p99), count(point.members)),
                    match point.members >= GOAL_SIZE {
                        true => met,
                        false => format!("{met} (not at 1M)"),
                    },
                ]);
            }
        }
        for point in &self.checkpoints {
            for (call, _, pair) in point.pairs().into_iter().take(2) {
                let ratio = pair.rate_ratio();
                table.row(vec![
                    format!("{call} under {OVERHEAD_GOAL}x the raw statement"),
                    format!("{ratio:.2}x at {}", count(point.members)),
                    verdict(ratio < OVERHEAD_GOAL),
                ]);
            }
        }
        table
    }

    fn fill_table(&self) -> Table {
        let mut table = Table::new(&["members", "joins", "seconds", "joins/s", "p50", "p99", "max", "CPU (cores)"]);
        for phase in &self.fill {
            let outcome = &phase.outcome;
            table.row(vec![
                format!("{} → {}", count(phase.from), count(phase.from + outcome.succeeded)),
                count(outcome.succeeded),
                format!("{:.1}", outcome.elapsed.as_secs_f64()),
                count(outcome.rate().round() as u64),
                duration(outcome.latencies.p50()),
                duration(outcome.latencies.p99()),
                duration(outcome.latencies.max()),
                cpu(outcome.cpu),
            ]);
        }
        table
    }

    fn fill_summary(&self) -> String {
        let joins: u64 = self.fill.iter().map(|phase| phase.outcome.succeeded).sum();
        let seconds: f64 = self.fill.iter().map(|phase| phase.outcome.elapsed.as_secs_f64()).sum();
        let mut summary = format!(
            "Whole fill: {} joins in {seconds:.0} s of filling = **{} joins/s** (the latency \
             windows, which add {} joins per size, are not counted here).",
            count(joins),
            count((joins as f64 / seconds.max(f64::EPSILON)).round() as u64),
            count(self.args.window_joins),
        );
        if let Some(usage) =
            self.fill.iter().max_by_key(|phase| phase.outcome.succeeded).and_then(|phase| phase.outcome.cpu)
        {
            summary.push(' ');
            summary.push_str(&bottleneck(&usage));
        }
        summary
    }

    fn latency_table(&self) -> Table {
        let mut table = Table::new(&["members", "call", "calls", "calls/s", "p50", "p99", "max", "CPU (cores)"]);
        for point in &self.checkpoints {
            for (service_call, raw_call, pair) in point.pairs() {
                for (call, outcome) in [(service_call, &pair.service), (raw_call, &pair.raw)] {
                    table.row(vec![
                        count(point.members),
                        call.to_owned(),
                        count(outcome.succeeded),
                        count(outcome.rate().round() as u64),
                        duration(outcome.latencies.p50()),
                        duration(outcome.latencies.p99()),
                        duration(outcome.latencies.max()),
                        cpu(outcome.cpu),
                    ]);
                }
            }
        }
        table
    }

    fn ratio_table(&self) -> Table {
        let mut table = Table::new(&["members", "call", "rate ratio", "p50 ratio", "p99 ratio", "under 2x"]);
        for point in &self.checkpoints {
            for (call, _, pair) in point.pairs() {
                let ratio = pair.rate_ratio();
                table.row(vec![
                    count(point.members),
                    call.to_owned(),
                    format!("{ratio:.2}x"),
                    format!("{:.2}x", pair.latency_ratio(Latencies::p50)),
                    format!("{:.2}x", pair.latency_ratio(Latencies::p99)),
                    verdict(ratio < OVERHEAD_GOAL),
                ]);
            }
        }
        table
    }
}

fn storage_table(storage: &Storage) -> Table {
    let mut table = Table::new(&["relation", "size", "bytes per member row"]);
    let rows = storage.member_rows.max(1) as f64;
    for (relation, bytes) in &storage.relations {
        table.row(vec![
            relation.clone(),
            format!("{:.1} MiB", *bytes as f64 / (1u64 << 20) as f64),
            format!("{:.0}", *bytes as f64 / rows),
        ]);
    }
    table.row(vec![
        "rows in groups.members".to_owned(),
        count(u64::try_from(storage.member_rows).unwrap_or(0)),
        String::new(),
    ]);
    table
}

/// What the CPU split says limited the fill.
fn bottleneck(usage: &CpuUsage) -> String {
    let cores = usage.process + usage.postgres + usage.other + usage.idle;
    if usage.idle < 0.1 * cores {
        format!(
            "During the longest phase the CPU was saturated ({:.2} of {cores:.0} cores idle): \
             the service and load generator took {:.2} cores, Postgres {:.2}, other work {:.2}, \
             so the fill rate is what the CPU left allowed.",
            usage.idle, usage.process, usage.postgres, usage.other
        )
    } else {
        format!(
            "During the longest phase {:.2} of {cores:.0} cores stayed idle (service and load \
             generator {:.2}, Postgres {:.2}, other {:.2}): joins waited on something other than \
             CPU, such as WAL flushes at commit or locks.",
            usage.idle, usage.process, usage.postgres, usage.other
        )
    }
}
