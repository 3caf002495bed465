//! The groups benchmark: joins into one BROADCAST group up to a million members, with the
//! latency of `JoinGroup` and of a member's own `GetMembership` at 1k, 100k and 1M members,
//! each beside the raw statement it is built on (see `docs/benchmarks.md`).
//!
//! The group is filled through the API: every member is a real `JoinGroup` call by a new
//! user. At each checkpoint the fill pauses for four windows at the same concurrency
//! (service joins, raw inserts, service lookups, raw lookups), then the two lookups again
//! with one call in flight.

mod results;
mod target;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use rand::Rng as _;

use crate::driver::{self, Outcome};
use crate::report::Section;
use results::{Checkpoint, FillPhase, Pair, Results};
use target::{OWNER, Target, TargetSize};

/// Member counts at which the fill pauses to measure latency (the sizes).
const CHECKPOINTS: [u64; 3] = [1_000, 100_000, 1_000_000];

/// Raw lookups run before the measured lookup windows so both find a warm cache.
const WARM_UP_LOOKUPS: u64 = 1_000;

/// How often the fill reports progress on stderr.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(15);

/// Options of the groups benchmark.
#[derive(Debug, Clone, Args)]
pub(crate) struct GroupsArgs {
    /// Members to fill the BROADCAST group to; checkpoints above it are skipped, and the
    /// last size is always measured.
    #[arg(long, default_value_t = 1_000_000)]
    pub members: u64,

    /// Calls in flight during the latency windows and their raw baselines.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,

    /// Calls in flight while filling the group; defaults to --concurrency.
    #[arg(long)]
    pub fill_concurrency: Option<usize>,

    /// GetMembership calls (and raw lookups) per latency window.
    #[arg(long, default_value_t = 5_000)]
    pub lookups: u64,

    /// JoinGroup calls (and raw inserts) per latency window.
    #[arg(long, default_value_t = 2_000)]
    pub window_joins: u64,

    /// GetMembership calls (and raw lookups) at each size with one call in flight, showing
    /// a lookup's own latency apart from queueing; 0 skips them.
    #[arg(long, default_value_t = 1_000)]
    pub serial_lookups: u64,

    /// HTTP/2 connections the load generator spreads its calls over.
    #[arg(long, default_value_t = 4)]
    pub channels: usize,

    /// Postgres connections of the service's pool (the production default), and of the
    /// baseline's pool.
    #[arg(long, default_value_t = 16)]
    pub pool_size: u32,

    /// The fill stops here, whatever size it has reached; the report says so.
    #[arg(long, default_value_t = 45)]
    pub time_limit_minutes: u64,
}

impl GroupsArgs {
    fn fill_concurrency(&self) -> usize {
        self.fill_concurrency.unwrap_or(self.concurrency).max(1)
    }

    /// The checkpoints this run measures: the sizes up to `members`, then
    /// `members` itself.
    fn checkpoints(&self) -> Vec<u64> {
        let mut sizes: Vec<u64> = CHECKPOINTS.into_iter().filter(|size| *size <= self.members).collect();
        if sizes.last() != Some(&self.members) && self.members > OWNER.unsigned_abs() {
            sizes.push(self.members);
        }
        sizes
    }
}

/// Runs the groups benchmark and returns its report section.
pub(crate) async fn run(args: &GroupsArgs) -> anyhow::Result<Section> {
    anyhow::ensure!(args.concurrency > 0, "--concurrency must be at least 1");
    let size = TargetSize { pool_size: args.pool_size, channels: args.channels };
    let target = Arc::new(Target::start(size).await?);
    let deadline = Instant::now() + Duration::from_secs(args.time_limit_minutes * 60);
    let mut results = Results::new(args.clone());
    // User ids 1..=members are exactly the members: the owner, then every joiner in turn.
    let mut members = 1u64;
    // The baseline group's only member so far is its creator, user 1.
    let mut raw_rows = 1u64;
    for checkpoint in args.checkpoints() {
        let phase = fill(&target, members, checkpoint, args.fill_concurrency(), deadline).await?;
        members += phase.outcome.succeeded;
        let reached = !phase.outcome.cut_short;
        results.fill.push(phase);
        if !reached {
            results.stopped_at = Some(members);
            eprintln!("groups: time limit reached at {members} members; stopping the fill");
            break;
        }
        let measured = measure(&target, args, members, raw_rows).await?;
        members += measured.join.service.succeeded;
        raw_rows += measured.join.raw.succeeded;
        eprintln!("{}", measured.summary());
        results.checkpoints.push(measured);
    }
    results.storage = Some(target.storage().await?);
    Arc::into_inner(target).context("a load worker still holds the target")?.stop().await?;
    Ok(results.section())
}

/// Joins users `members + 1 ..= checkpoint` through the API.
async fn fill(
    target: &Arc<Target>,
    members: u64,
    checkpoint: u64,
    concurrency: usize,
    deadline: Instant,
) -> anyhow::Result<FillPhase> {
    let joined = Arc::new(AtomicU64::new(0));
    let progress = tokio::spawn(report_progress(Arc::clone(&joined), members));
    let call_target = Arc::clone(target);
    let counter = Arc::clone(&joined);
    let outcome = driver::run(concurrency, members + 1..checkpoint + 1, deadline, move |user| {
        let target = Arc::clone(&call_target);
        let counter = Arc::clone(&counter);
        async move {
            target.join(user_id(user)?).await?;
            counter.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }
    })
    .await;
    progress.abort();
    let outcome = outcome?;
    outcome.ensure_no_failures("the fill's joins")?;
    eprintln!("groups: filled {members} -> {} members: {:.0} joins/s", members + outcome.succeeded, outcome.rate());
    Ok(FillPhase { from: members, outcome })
}

/// Prints the fill's progress every [`PROGRESS_INTERVAL`] until aborted.
async fn report_progress(joined: Arc<AtomicU64>, members_before: u64) {
    let started = Instant::now();
    let mut ticker = tokio::time::interval(PROGRESS_INTERVAL);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        let done = joined.load(Ordering::Relaxed);
        eprintln!(
            "groups: {} members, {:.0} joins/s in this phase",
            members_before + done,
            done as f64 / started.elapsed().as_secs_f64()
        );
    }
}

/// The windows at one size: service joins, raw inserts, service lookups, raw lookups, then
/// the serial lookups.
async fn measure(target: &Arc<Target>, args: &GroupsArgs, members: u64, raw_rows: u64) -> anyhow::Result<Checkpoint> {
    // No deadline inside a window: each is bounded by its count.
    let no_deadline = Instant::now() + Duration::from_secs(24 * 3600);
    let concurrency = args.concurrency;

    let call_target = Arc::clone(target);
    let new_users = members + 1..members + 1 + args.window_joins;
    let join = driver::run(concurrency, new_users, no_deadline, move |user| {
        let target = Arc::clone(&call_target);
        async move { target.join(user_id(user)?).await }
    })
    .await?;
    join.ensure_no_failures("the JoinGroup window")?;

    // The baseline group's rows are numbered on from the previous checkpoint's.
    let call_target = Arc::clone(target);
    let raw_users = raw_rows + 1..raw_rows + 1 + args.window_joins;
    let raw_insert = driver::run(concurrency, raw_users, no_deadline, move |user| {
        let target = Arc::clone(&call_target);
        async move { target.raw_insert(user_id(user)?).await }
    })
    .await?;
    raw_insert.ensure_no_failures("the raw insert window")?;

    // Lookups pick any member present before this checkpoint's join window.
    let lookup_window = |concurrency: usize, count: u64, raw: bool| {
        let call_target = Arc::clone(target);
        driver::run(concurrency, 0..count, no_deadline, move |call| {
            let target = Arc::clone(&call_target);
            async move {
                let user = user_id(rand::rng().random_range(1..=members))?;
                match raw {
                    true => target.raw_lookup(user).await,
                    false => target.lookup(call, user).await,
                }
            }
        })
    };
    lookup_window(concurrency, WARM_UP_LOOKUPS, true).await?;
    let lookup = lookup_window(concurrency, args.lookups, false).await?;
    lookup.ensure_no_failures("the GetMembership window")?;
    let raw_lookup = lookup_window(concurrency, args.lookups, true).await?;
    raw_lookup.ensure_no_failures("the raw lookup window")?;

    let serial_lookup = match args.serial_lookups {
        0 => None,
        count => {
            let service = lookup_window(1, count, false).await?;
            service.ensure_no_failures("the serial GetMembership window")?;
            let raw = lookup_window(1, count, true).await?;
            raw.ensure_no_failures("the serial raw lookup window")?;
            Some(Pair { service, raw })
        }
    };

    Ok(Checkpoint {
        members,
        join: Pair { service: join, raw: raw_insert },
        lookup: Pair { service: lookup, raw: raw_lookup },
        serial_lookup,
    })
}

/// A call number as a user id.
fn user_id(number: u64) -> anyhow::Result<i64> {
    i64::try_from(number).context("user id out of range")
}

impl Checkpoint {
    /// One line for the log.
    fn summary(&self) -> String {
        let ms = |outcome: &Outcome| {
            format!(
                "{:.0}/s p50 {:.2} ms p99 {:.2} ms",
                outcome.rate(),
                crate::report::millis(outcome.latencies.p50()),
                crate::report::millis(outcome.latencies.p99())
            )
        };
        format!(
            "groups: at {} members: JoinGroup {} | raw INSERT {} | GetMembership {} | raw SELECT {}",
            self.members,
            ms(&self.join.service),
            ms(&self.join.raw),
            ms(&self.lookup.service),
            ms(&self.lookup.raw)
        )
    }
}
