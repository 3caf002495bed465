//! The messages benchmark's figures and how they read in the report: the goals, the send
//! windows beside their raw baselines, commit batches and CPU per message (the messages
//! service's own apart), the hot group through the service and straight through the
//! committer, and the naive counter.

use std::fmt::Write as _;
use std::time::Duration;

use super::counting::Batches;
use super::target::{NAIVE_GROUP, OWNER, PAYLOAD_BYTES, SeqSpan, Spread};
use super::{CommitSetting, MessagesArgs};
use crate::cpu::CpuUsage;
use crate::driver::Outcome;
use crate::report::{Section, Table, count, cpu, duration, verdict};

/// Goal: SendMessage msgs/s ÷ the raw INSERT's in the judged send configuration.
const SEND_RATIO_GOAL: f64 = 1.5;
/// Goal: a send's p99 in the judged send configuration.
const SEND_P99_GOAL: Duration = Duration::from_millis(15);
/// Goal: one sender's p50 ÷ the raw INSERT's p50 (one call in flight: a send's own cost).
const SINGLE_P50_RATIO_GOAL: f64 = 2.0;
/// Goal: durable updates per second into one hot group, through SendMessage.
const HOT_GOAL: f64 = 15_000.0;
/// Goal: CPU µs the messages service spends per send in the judged send configuration.
const MESSAGES_CPU_GOAL_MICROS: f64 = 35.0;
/// The send configuration the goals are judged at.
const GOAL_SENDERS: usize = 64;
/// The spread the goals are judged at.
const GOAL_GROUPS: usize = 1_000;

/// One measured window.
#[derive(Debug)]
pub(super) struct Sample {
    /// The calls.
    pub outcome: Outcome,
    /// What the committer handed the store meanwhile (nothing in the direct windows).
    pub batches: Batches,
    /// Outbox rows not yet acknowledged when the measured window started (the outbox is
    /// emptied before the warm-up).
    pub backlog_at_start: i64,
    /// Outbox rows not yet acknowledged (published and deleted) when the window ended.
    pub backlog: i64,
}

impl Sample {
    fn rate(&self) -> f64 {
        self.outcome.rate()
    }

    /// CPU microseconds per stored message of `cores` over the window.
    fn micros_per_message(&self, cores: f64) -> f64 {
        cores * self.outcome.elapsed.as_secs_f64() * 1e6 / self.outcome.succeeded.max(1) as f64
    }

    /// `bench µs/msg`, `pg µs/msg`.
    fn cpu_per_message(&self) -> (String, String) {
        match self.outcome.cpu {
            Some(usage) => (
                format!("{:.0}", self.micros_per_message(usage.process)),
                format!("{:.0}", self.micros_per_message(usage.postgres)),
            ),
            None => ("n/a".to_owned(), "n/a".to_owned()),
        }
    }

    /// CPU µs the messages service's own runtime spent per message (its share of
    /// `bench`): the service, or the committer and its publisher in the direct windows.
    fn messages_micros(&self) -> Option<f64> {
        self.outcome.cpu.map(|usage| self.micros_per_message(usage.service))
    }

    /// `messages µs/msg`.
    fn messages_cell(&self) -> String {
        self.messages_micros().map_or_else(|| "n/a".to_owned(), |micros| format!("{micros:.0}"))
    }

    /// Commits per second (one per message when the committer was not involved).
    fn commits_per_second(&self) -> f64 {
        self.batches.batches as f64 / self.outcome.elapsed.as_secs_f64().max(f64::EPSILON)
    }

    /// Updates published and acknowledged per second during the window: outbox rows
    /// written (one per committed update) minus rows left at the end, over the window;
    /// `None` when nothing was committed.
    fn published_rate(&self) -> Option<f64> {
        (self.batches.writes > 0).then(|| {
            let published = self.batches.writes as f64 + self.backlog_at_start as f64 - self.backlog as f64;
            published.max(0.0) / self.outcome.elapsed.as_secs_f64().max(f64::EPSILON)
        })
    }

    /// How many batches were inside `apply` at once, on average.
    fn apply_concurrency(&self) -> f64 {
        self.batches.busy.as_secs_f64() / self.outcome.elapsed.as_secs_f64().max(f64::EPSILON)
    }

    fn summary(&self) -> String {
        let mut line = format!(
            "{:.0}/s p50 {} p99 {}",
            self.rate(),
            duration(self.outcome.latencies.p50()),
            duration(self.outcome.latencies.p99())
        );
        if self.batches.batches > 0 {
            line.push_str(&format!(" ({:.1} per commit)", self.batches.mean()));
        }
        if let Some(usage) = self.outcome.cpu {
            line.push_str(&format!(" [{}]", usage.describe()));
        }
        line
    }
}

/// The runs of one window.
#[derive(Debug, Default)]
pub(super) struct Series {
    /// One per run.
    pub samples: Vec<Sample>,
}

impl Series {
    /// The run with the median rate (the lower middle of an even count).
    fn median(&self) -> Option<&Sample> {
        let mut sorted: Vec<&Sample> = self.samples.iter().collect();
        sorted.sort_by(|a, b| a.rate().total_cmp(&b.rate()));
        sorted.get(sorted.len().saturating_sub(1) / 2).copied()
    }

    fn rate(&self) -> f64 {
        self.median().map_or(0.0, Sample::rate)
    }

    /// `5,123 (4,900–5,300)`: the median rate, and the range over runs when there are several.
    fn rate_cell(&self) -> String {
        let rates: Vec<f64> = self.samples.iter().map(Sample::rate).collect();
        let median = rate(self.rate());
        match rates.len() {
            0 | 1 => median,
            _ => {
                let low = rates.iter().copied().fold(f64::INFINITY, f64::min);
                let high = rates.iter().copied().fold(0.0, f64::max);
                format!("{median} ({}–{})", rate(low), rate(high))
            }
        }
    }

    fn p50(&self) -> String {
        self.median().map_or_else(String::new, |sample| duration(sample.outcome.latencies.p50()))
    }

    fn p99(&self) -> String {
        self.median().map_or_else(String::new, |sample| duration(sample.outcome.latencies.p99()))
    }

    fn p50_value(&self) -> Duration {
        self.median().map_or(Duration::MAX, |sample| sample.outcome.latencies.p50())
    }

    fn p99_value(&self) -> Duration {
        self.median().map_or(Duration::MAX, |sample| sample.outcome.latencies.p99())
    }
}

/// A send configuration: the service and the raw baseline.
#[derive(Debug)]
pub(super) struct SendRow {
    /// One group or spread.
    pub spread: Spread,
    /// Concurrent senders.
    pub senders: usize,
    /// `SendMessage`.
    pub service: Series,
    /// The raw INSERT.
    pub raw: Series,
}

impl SendRow {
    /// One line for the log.
    pub(super) fn log_line(&self, service: &Sample, raw: &Sample) -> String {
        format!(
            "messages: {} groups, {} senders: SendMessage {} | raw INSERT {}",
            self.groups_label(),
            self.senders,
            service.summary(),
            raw.summary()
        )
    }

    fn groups_label(&self) -> String {
        match self.spread {
            Spread::One | Spread::Hot => "1".to_owned(),
            Spread::Many => "many".to_owned(),
        }
    }

    fn ratio(&self) -> f64 {
        self.service.rate() / self.raw.rate().max(f64::EPSILON)
    }
}

/// How the hot group's sends reach the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum HotPath {
    /// Straight through a committer on the store, publishing to the service's bus.
    Committer,
    /// The same, publishing to an in-process bus nobody listens on: committing and
    /// acknowledging, without Redis.
    CommitterInProcessBus,
    /// `SendMessage` through the service.
    Service,
}

/// A hot-group configuration.
#[derive(Debug)]
pub(super) struct HotRow {
    /// How the sends reach the store.
    pub path: HotPath,
    /// The commit settings.
    pub setting: CommitSetting,
    /// Sends in flight.
    pub in_flight: usize,
    /// The runs.
    pub series: Series,
}

impl HotRow {
    /// One line for the log.
    pub(super) fn log_line(&self, sample: &Sample) -> String {
        format!(
            "messages: hot group, {} in flight, {} with {}: {}",
            self.in_flight,
            self.path(),
            self.setting,
            sample.summary()
        )
    }

    fn path(&self) -> &'static str {
        match self.path {
            HotPath::Service => "SendMessage",
            HotPath::Committer => "committer + store",
            HotPath::CommitterInProcessBus => "committer + store, in-process bus",
        }
    }
}

/// A naive counter configuration.
#[derive(Debug)]
pub(super) struct NaiveRow {
    /// Calls in flight.
    pub in_flight: usize,
    /// Connections they share.
    pub connections: usize,
    /// The runs.
    pub series: Series,
}

impl NaiveRow {
    /// One line for the log.
    pub(super) fn log_line(&self, sample: &Sample) -> String {
        format!("messages: naive counter, {} in flight: {}", self.in_flight, sample.summary())
    }
}

/// Everything the run measured.
#[derive(Debug)]
pub(super) struct Results {
    args: MessagesArgs,
    sends: Vec<SendRow>,
    hot: Vec<HotRow>,
    naive: Vec<NaiveRow>,
    /// The hot group's messages at the end (service and committer windows alike).
    pub hot_seqs: Option<SeqSpan>,
    /// Rows in messages.messages and its size in bytes, at the end.
    pub storage: Option<(i64, i64)>,
}

impl Results {
    /// Empty results of a run with `args`.
    pub(super) fn new(args: MessagesArgs) -> Self {
        Self { args, sends: Vec::new(), hot: Vec::new(), naive: Vec::new(), hot_seqs: None, storage: None }
    }

    /// The send configuration's row, created on first use.
    pub(super) fn send_row(&mut self, spread: Spread, senders: usize) -> &mut SendRow {
        let index = match self.sends.iter().position(|row| row.spread == spread && row.senders == senders) {
            Some(index) => index,
            None => {
                self.sends.push(SendRow { spread, senders, service: Series::default(), raw: Series::default() });
                self.sends.len() - 1
            }
        };
        &mut self.sends[index]
    }

    /// The hot configuration's row, created on first use.
    pub(super) fn hot_row(&mut self, path: HotPath, setting: CommitSetting, in_flight: usize) -> &mut HotRow {
        let index = match self
            .hot
            .iter()
            .position(|row| row.path == path && row.setting == setting && row.in_flight == in_flight)
        {
            Some(index) => index,
            None => {
                self.hot.push(HotRow { path, setting, in_flight, series: Series::default() });
                self.hot.len() - 1
            }
        };
        &mut self.hot[index]
    }

    /// The naive configuration's row, created on first use.
    pub(super) fn naive_row(&mut self, in_flight: usize, connections: usize) -> &mut NaiveRow {
        let index = match self.naive.iter().position(|row| row.in_flight == in_flight) {
            Some(index) => index,
            None => {
                self.naive.push(NaiveRow { in_flight, connections, series: Series::default() });
                self.naive.len() - 1
            }
        };
        &mut self.naive[index]
    }

    /// The report section.
    pub(super) fn section(&self) -> Section {
        let mut section = Section::new("Messages: sends (W4), one hot group, the naive counter");
        section.paragraph(self.method());
        section.heading("Goals");
        section.table(self.goals());
        section.heading("SendMessage beside the raw INSERT (W4)");
        section.table(self.send_table());
        section.paragraph(
            "msgs/s is the median over the runs (range in brackets); p50 and p99 are those of the \
             median run. SendMessage ÷ raw is the ratio of the median rates: above 1, group commit \
             stores more messages per second than one durable INSERT per transaction does with as \
             many connections as calls in flight.",
        );
        section.heading("Commit batches and CPU per message");
        section.table(self.batch_table());
        section.paragraph(
            "Of the median run. A commit is one `apply` (one transaction); writes per commit are \
             mean / median / largest. `apply` is the mean time a batch spent in `apply`, waiting for \
             the group locks included. µs/msg = CPU time over the window ÷ messages stored: \
             `bench` is this process (both services and the load generator), `messages` the part \
             of it the messages service spent on its own runtime's threads (gRPC server, \
             validation, permission checks, committer, publisher, its side of the store and the \
             bus), `pg` every Postgres process. Published/s = updates the committer's publisher \
             published and acknowledged per second: outbox rows written (one per committed \
             update) minus rows left at the end, over the window; outbox left = updates committed \
             but not yet acknowledged (published and their outbox rows deleted) when the window \
             ended.",
        );
        section.heading("One hot group");
        section.table(self.hot_table());
        section.paragraph(
            "Commit setting = workers / most writes per batch / batch wait in µs (the service's \
             default is 1/256/0). In flight = senders, each a distinct member of the group. \
             `committer + store` submits the same posts to `fanfare_messages::committer::Committer` \
             on the same store, its publisher publishing each batch right after the commit to the \
             service's bus and acknowledging it, as the service does, but without gRPC, the load \
             generator's HTTP/2 client or permission checks: what the database path alone allows; \
             `in-process bus` is the same publishing to an in-process bus nobody listens on, \
             which measures committing and acknowledging without Redis. Each setting is measured \
             through the service and, right after, through the committer. Published/s and outbox \
             left as above (the outbox is emptied before each window). Busy = mean number of \
             batches inside `apply` at once (the hot group's lock makes them take turns, so \
             waiting for it is included).",
        );
        if let Some(span) = self.hot_seqs {
            section.paragraph(format!(
                "At the end the hot group held {} messages with message_seq {} to {}: {}.",
                count(u64::try_from(span.messages).unwrap_or(0)),
                count(u64::try_from(span.lowest).unwrap_or(0)),
                count(u64::try_from(span.highest).unwrap_or(0)),
                if span.gapless() { "gapless" } else { "**with gaps**" },
            ));
        }
        section.heading("The naive per-message counter, one group");
        section.table(self.naive_table());
        section.paragraph(format!(
            "Each call: `BEGIN; UPDATE messages.group_logs SET last_message_seq = last_message_seq + 1 … \
             WHERE group_id = {NAIVE_GROUP} RETURNING last_message_seq; INSERT` the message row with that \
             seq; `COMMIT` — the group's counter row stays locked through every commit's WAL flush. \
             Calls share one connection each up to {} connections.",
            self.args.raw_max_connections
        ));
        section.heading("Reading the figures");
        for paragraph in self.reading() {
            section.paragraph(paragraph);
        }
        if let Some((rows, bytes)) = self.storage {
            section.paragraph(format!(
                "At the end messages.messages held {} rows (service and baselines) in {:.0} MiB with \
                 its indexes.",
                count(u64::try_from(rows).unwrap_or(0)),
                bytes as f64 / (1u64 << 20) as f64
            ));
        }
        section
    }

    fn method(&self) -> String {
        let args = &self.args;
        let senders: Vec<String> = args.senders.iter().map(|senders| senders.to_string()).collect();
        let hot: Vec<String> = args.hot_in_flight.iter().map(|count| count.to_string()).collect();
        let commit = match args.commit.is_default() {
            true => format!("{} (the service's defaults)", args.commit),
            false => format!("{} (not the service's defaults, 1/256/0)", args.commit),
        };
        let bus = match &args.redis_url {
            Some(_) => "the Redis at `--redis-url`, so publishing costs are included",
            None => {
                "an in-process bus nobody listens on (no Redis: publishing costs nearly nothing; \
                 acknowledging, the batched deletes of the outbox rows, is included)"
            }
        };
        format!(
            "The groups and messages services run in this process over one fresh database, \
             messages asking groups for permissions over gRPC (membership cached for the default \
             60 s, as in production) and its committer publishing each batch right after the \
             commit through {bus}. The messages service (with its store's pool and its bus) runs \
             on a tokio runtime of its own, {workers} worker threads, whose threads' CPU time is \
             read apart from the rest of the process: what a messages pod would spend. Groups runs without \
             `messages_url`: the setup's membership changes never reach the update logs, which \
             only hold the sends. Messages runs with its production pool ({pool} connections), the \
             per-user send limit off (`limits.user_sends_per_second = 0`), groups with the \
             per-user change limit off, and commit settings workers / batch max / wait µs = \
             {commit}. User {owner} creates every group: COMMUNITY, open, post policy all \
             members, no slow mode; users 1, 2, … are added with `AddMembers` as the senders, a \
             distinct user per sender. Each message is a `SendMessage` with a {bytes}-byte ASCII \
             text carrying the sender id, a per-sender sequence and the send time \
             (CLOCK_MONOTONIC µs), and a new idempotency key. Send windows: {senders} senders \
             into one group, and spread over {groups} groups, each sender taking its own share of \
             them in turn (sender w of S: the groups whose index is w mod S), so every group has \
             one sender. Each send window is followed by its baseline: the raw single-row INSERT \
             of the same row into `messages.messages` (same columns, partitions and indexes; group \
             ids far above the service's), one durable autocommit transaction per row, from as \
             many sqlx connections as senders (at most {raw}). The hot group takes {hot} sends in \
             flight over {channels} HTTP/2 connections. Every window: {warm:.0} s of warm-up on \
             the same schedule (excluded; in the spread windows, until every sender has also sent \
             once to each of its groups, so permission checks hit the cache as on a busy pod), \
             then {window:.0} s measured, closed-loop; every window ran {runs} times, each run on \
             a freshly started messages service (same database). The load generator shares the \
             process and the 2 cores with both services and Postgres, so its gRPC client work \
             counts against SendMessage.",
            pool = args.messages_pool_size,
            workers = super::runtime::WORKER_THREADS,
            owner = OWNER,
            bytes = PAYLOAD_BYTES,
            senders = senders.join(", "),
            groups = count(args.spread_groups as u64),
            raw = args.raw_max_connections,
            hot = hot.join(" and "),
            channels = args.message_channels,
            warm = args.warm_up_seconds,
            window = args.window_seconds,
            runs = args.runs,
        )
    }

    /// The send configuration the goals are judged at: 64 senders over 1,000 groups, or
    /// the nearest this run measured.
    fn judged_send(&self) -> Option<&SendRow> {
        self.sends.iter().filter(|row| row.spread == Spread::Many).min_by_key(|row| row.senders.abs_diff(GOAL_SENDERS))
    }

    fn goals(&self) -> Table {
        let mut table = Table::new(&["goal", "measured", "verdict"]);
        let groups = count(GOAL_GROUPS as u64);
        if let Some(row) = self.judged_send() {
            let exact = row.senders == GOAL_SENDERS && self.args.spread_groups == GOAL_GROUPS;
            let qualify = |met: String| match exact {
                true => met,
                false => format!("{met} (judged at {} senders over {} groups)", row.senders, self.args.spread_groups),
            };
            let ratio = row.ratio();
            table.row(vec![
                format!(
                    "{GOAL_SENDERS} senders over {groups} groups: SendMessage stores ≥ {SEND_RATIO_GOAL}x the msgs/s \
                     of the raw one-INSERT-per-transaction baseline"
                ),
                format!("{} vs {} msgs/s ({ratio:.2}x)", rate(row.service.rate()), rate(row.raw.rate())),
                qualify(verdict(ratio >= SEND_RATIO_GOAL)),
            ]);
            table.row(vec![
                format!(
                    "{GOAL_SENDERS} senders over {groups} groups: SendMessage p99 < {} ms",
                    SEND_P99_GOAL.as_millis()
                ),
                row.service.p99(),
                qualify(verdict(row.service.p99_value() < SEND_P99_GOAL)),
            ]);
            let (measured, met) =
                match row.service.median().and_then(|sample| Some((sample, sample.messages_micros()?))) {
                    Some((sample, micros)) => (
                        format!("{micros:.1} µs on its own threads (beside it, {})", messages_cpu_breakdown(sample)),
                        qualify(verdict(micros <= MESSAGES_CPU_GOAL_MICROS)),
                    ),
                    None => ("not measured (no /proc)".to_owned(), "n/a".to_owned()),
                };
            table.row(vec![
                format!(
                    "{GOAL_SENDERS} senders over {groups} groups: messages CPU per send ≤ {MESSAGES_CPU_GOAL_MICROS:.0} µs"
                ),
                measured,
                met,
            ]);
        }
        for row in self.sends.iter().filter(|row| row.senders == 1) {
            let (service, raw) = (row.service.p50_value(), row.raw.p50_value());
            let ratio = service.as_secs_f64() / raw.as_secs_f64().max(f64::EPSILON);
            table.row(vec![
                format!(
                    "1 sender {}: SendMessage p50 ≤ {SINGLE_P50_RATIO_GOAL}x the raw INSERT's p50",
                    match row.spread {
                        Spread::Many => format!("over {} groups", self.groups_cell(row.spread)),
                        Spread::One | Spread::Hot => "into 1 group".to_owned(),
                    }
                ),
                format!("{} vs {} ({ratio:.2}x)", row.service.p50(), row.raw.p50()),
                verdict(ratio <= SINGLE_P50_RATIO_GOAL),
            ]);
        }
        let service_rows = || self.hot.iter().filter(|row| row.path == HotPath::Service);
        if let Some(row) = best(service_rows()) {
            let gapless = self.hot_seqs.is_none_or(|span| span.gapless());
            table.row(vec![
                format!(
                    "one hot group sustains ≥ {} durable updates/s through SendMessage, gapless",
                    count(HOT_GOAL as u64)
                ),
                format!(
                    "{}/s with {}, {} in flight; {}",
                    rate(row.series.rate()),
                    row.setting,
                    row.in_flight,
                    match self.hot_seqs {
                        Some(span) if span.gapless() => "message_seqs gapless".to_owned(),
                        Some(_) => "message_seqs **with gaps**".to_owned(),
                        None => "gaps not checked".to_owned(),
                    }
                ),
                verdict(row.series.rate() >= HOT_GOAL && gapless),
            ]);
        }
        if let Some(row) = best(service_rows().filter(|row| row.setting.is_default()))
            && best(service_rows()).is_some_and(|best| !best.setting.is_default())
        {
            table.row(vec![
                "the same with the service's default commit settings".to_owned(),
                format!("{}/s with {}, {} in flight", rate(row.series.rate()), row.setting, row.in_flight),
                verdict(row.series.rate() >= HOT_GOAL),
            ]);
        }
        if let Some(row) = best(self.hot.iter().filter(|row| row.path == HotPath::Committer)) {
            table.row(vec![
                "(where the limit is) the same straight through the committer, no gRPC".to_owned(),
                format!("{}/s with {}, {} in flight", rate(row.series.rate()), row.setting, row.in_flight),
                verdict(row.series.rate() >= HOT_GOAL),
            ]);
        }
        if let Some(row) = self.naive.iter().max_by(|a, b| a.series.rate().total_cmp(&b.series.rate())) {
            let hot = best(service_rows()).map_or(0.0, |best| best.series.rate());
            table.row(vec![
                "beside it: the naive per-message counter, one group".to_owned(),
                format!(
                    "{}/s at best ({} in flight); group commit through the service: {:.1}x that",
                    rate(row.series.rate()),
                    row.in_flight,
                    hot / row.series.rate().max(f64::EPSILON)
                ),
                "for comparison".to_owned(),
            ]);
        }
        table
    }

    fn send_table(&self) -> Table {
        let mut table = Table::new(&[
            "groups",
            "senders",
            "SendMessage msgs/s",
            "p50",
            "p99",
            "raw INSERT msgs/s",
            "raw p50",
            "raw p99",
            "SendMessage ÷ raw",
        ]);
        for row in &self.sends {
            table.row(vec![
                self.groups_cell(row.spread),
                row.senders.to_string(),
                row.service.rate_cell(),
                row.service.p50(),
                row.service.p99(),
                row.raw.rate_cell(),
                row.raw.p50(),
                row.raw.p99(),
                format!("{:.2}x", row.ratio()),
            ]);
        }
        table
    }

    fn groups_cell(&self, spread: Spread) -> String {
        match spread {
            Spread::One | Spread::Hot => "1".to_owned(),
            Spread::Many => count(self.args.spread_groups as u64),
        }
    }

    fn batch_table(&self) -> Table {
        let mut table = Table::new(&[
            "groups",
            "senders",
            "call",
            "msgs/s",
            "commits/s",
            "writes per commit",
            "apply",
            "bench µs/msg",
            "messages µs/msg",
            "pg µs/msg",
            "CPU (cores)",
            "published/s",
            "outbox left",
        ]);
        for row in &self.sends {
            for (call, series, service) in [("SendMessage", &row.service, true), ("raw INSERT", &row.raw, false)] {
                let Some(sample) = series.median() else { continue };
                let (bench, pg) = sample.cpu_per_message();
                let (commits, per_commit, apply, messages, published, backlog) = match service {
                    true => (
                        rate(sample.commits_per_second()),
                        batch_sizes(&sample.batches),
                        duration(sample.batches.mean_apply()),
                        sample.messages_cell(),
                        published_cell(sample),
                        count(u64::try_from(sample.backlog).unwrap_or(0)),
                    ),
                    false => (
                        rate(sample.rate()),
                        "1".to_owned(),
                        String::new(),
                        String::new(),
                        String::new(),
                        String::new(),
                    ),
                };
                table.row(vec![
                    self.groups_cell(row.spread),
                    row.senders.to_string(),
                    call.to_owned(),
                    rate(sample.rate()),
                    commits,
                    per_commit,
                    apply,
                    bench,
                    messages,
                    pg,
                    cpu(sample.outcome.cpu),
                    published,
                    backlog,
                ]);
            }
        }
        table
    }

    fn hot_table(&self) -> Table {
        let mut table = Table::new(&[
            "path",
            "commit setting",
            "in flight",
            "updates/s",
            "p50",
            "p99",
            "commits/s",
            "writes per commit",
            "apply",
            "busy",
            "bench µs/upd",
            "messages µs/upd",
            "pg µs/upd",
            "CPU (cores)",
            "published/s",
            "outbox left",
        ]);
        // Setting by setting: the service, then straight through the committer.
        let paths = [HotPath::Service, HotPath::Committer, HotPath::CommitterInProcessBus];
        let rows = self.args.hot_commit.iter().flat_map(|setting| {
            paths
                .into_iter()
                .flat_map(move |path| self.hot.iter().filter(move |row| row.path == path && row.setting == *setting))
        });
        for row in rows {
            let Some(sample) = row.series.median() else { continue };
            let (bench, pg) = sample.cpu_per_message();
            table.row(vec![
                row.path().to_owned(),
                row.setting.to_string(),
                row.in_flight.to_string(),
                row.series.rate_cell(),
                row.series.p50(),
                row.series.p99(),
                rate(sample.commits_per_second()),
                batch_sizes(&sample.batches),
                duration(sample.batches.mean_apply()),
                format!("{:.2}", sample.apply_concurrency()),
                bench,
                sample.messages_cell(),
                pg,
                cpu(sample.outcome.cpu),
                published_cell(sample),
                count(u64::try_from(sample.backlog).unwrap_or(0)),
            ]);
        }
        table
    }

    fn naive_table(&self) -> Table {
        let mut table = Table::new(&[
            "in flight",
            "connections",
            "updates/s",
            "p50",
            "p99",
            "bench µs/upd",
            "pg µs/upd",
            "CPU (cores)",
        ]);
        for row in &self.naive {
            let Some(sample) = row.series.median() else { continue };
            let (bench, pg) = sample.cpu_per_message();
            table.row(vec![
                row.in_flight.to_string(),
                row.connections.to_string(),
                row.series.rate_cell(),
                row.series.p50(),
                row.series.p99(),
                bench,
                pg,
                cpu(sample.outcome.cpu),
            ]);
        }
        table
    }

    /// What the figures say, in sentences computed from them.
    fn reading(&self) -> Vec<String> {
        let mut paragraphs = Vec::new();
        if let Some(row) = self.judged_send()
            && let (Some(service), Some(raw)) = (row.service.median(), row.raw.median())
        {
            paragraphs.push(format!(
                "At {} senders over {} groups SendMessage stored {} msgs/s against the raw INSERT's {} \
                 ({:.2}x), committing {:.1} messages per transaction on average. {}",
                row.senders,
                count(self.args.spread_groups as u64),
                rate(service.rate()),
                rate(raw.rate()),
                row.ratio(),
                service.batches.mean(),
                cpu_sentence("During the SendMessage window", service.outcome.cpu),
            ));
            if let Some(messages) = service.messages_micros() {
                paragraphs.push(format!(
                    "Per send in that window the messages service's own threads spent {messages:.1} µs of CPU \
                     (goal ≤ {MESSAGES_CPU_GOAL_MICROS:.0} µs: {}); beside it, {}.",
                    if messages <= MESSAGES_CPU_GOAL_MICROS { "met" } else { "not met" },
                    messages_cpu_breakdown(service),
                ));
            }
        }
        let service = best(self.hot.iter().filter(|row| row.path == HotPath::Service));
        let store = service.and_then(|service| {
            self.hot.iter().find(|row| {
                row.path == HotPath::Committer && row.setting == service.setting && row.in_flight == service.in_flight
            })
        });
        let best_store = best(self.hot.iter().filter(|row| row.path == HotPath::Committer));
        if let (Some(store), Some(service), Some(best_store)) = (store, service, best_store)
            && let (Some(store_sample), Some(service_sample)) = (store.series.median(), service.series.median())
        {
            let ratio = store.series.rate() / service.series.rate().max(f64::EPSILON);
            paragraphs.push(format!(
                "One hot group: the service did best with {} and {} in flight, {}/s ({:.0} writes per commit, \
                 {:.2} batches in `apply` at once); the same setting straight through the committer \
                 took {}/s ({:.0} writes per commit), {ratio:.2}x as much. The best straight through \
                 the committer was {}/s ({}, {} in flight). {} {}",
                service.setting,
                service.in_flight,
                rate(service.series.rate()),
                service_sample.batches.mean(),
                service_sample.apply_concurrency(),
                rate(store.series.rate()),
                store_sample.batches.mean(),
                rate(best_store.series.rate()),
                best_store.setting,
                best_store.in_flight,
                cpu_sentence("Through SendMessage", service_sample.outcome.cpu),
                cpu_sentence("Through the committer", store_sample.outcome.cpu),
            ));
            if let Some(in_process) = self.hot.iter().find(|row| row.path == HotPath::CommitterInProcessBus)
                && let Some(service_bus) = self.hot.iter().find(|row| {
                    row.path == HotPath::Committer
                        && row.setting == in_process.setting
                        && row.in_flight == in_process.in_flight
                })
            {
                let service_bus_name = match self.args.redis_url {
                    Some(_) => "to Redis",
                    None => {
                        "to the service's bus (in-process too in this run, no `--redis-url`: the two differ only in when they ran)"
                    }
                };
                paragraphs.push(format!(
                    "Publishing's share: with {} and {} in flight the committer stored {}/s publishing {service_bus_name} \
                     and {}/s publishing to an in-process bus nobody listens on ({:.2}x).",
                    in_process.setting,
                    in_process.in_flight,
                    rate(service_bus.series.rate()),
                    rate(in_process.series.rate()),
                    in_process.series.rate() / service_bus.series.rate().max(f64::EPSILON),
                ));
            }
            if let (Some(service_published), Some(store_published)) =
                (service_sample.published_rate(), store_sample.published_rate())
            {
                paragraphs.push(format!(
                    "The committer's publisher (one lane per commit worker, publishing each batch right after \
                     its commit, then deleting its outbox rows in batches) published and acknowledged {}/s while \
                     SendMessage committed {}/s, leaving {} updates not yet acknowledged at the end of the window; \
                     straight through the committer {}/s of {}/s, leaving {}.",
                    rate(service_published),
                    rate(service.series.rate()),
                    count(u64::try_from(service_sample.backlog).unwrap_or(0)),
                    rate(store_published),
                    rate(store.series.rate()),
                    count(u64::try_from(store_sample.backlog).unwrap_or(0)),
                ));
            }
            if let (Some(store_cpu), Some(service_cpu)) =
                (store_sample.cpu_per_message_f64(), service_sample.cpu_per_message_f64())
            {
                let mut text = format!(
                    "Per update, this process spent {:.0} µs of CPU through SendMessage against {:.0} µs \
                     straight through the committer. Postgres spent {:.0} µs and {:.0} µs.",
                    service_cpu.0, store_cpu.0, service_cpu.1, store_cpu.1,
                );
                if let (Some(service_messages), Some(store_messages)) =
                    (service_sample.messages_micros(), store_sample.messages_micros())
                {
                    let _ = write!(
                        text,
                        " Of it, the messages service's own threads spent {service_messages:.0} µs through \
                         SendMessage and {store_messages:.0} µs as committer and publisher alone: {:.0} µs per \
                         update is its gRPC server, decoding, validation and the permission check; the other \
                         {:.0} µs through SendMessage is the load generator's gRPC client (and groups).",
                        (service_messages - store_messages).max(0.0),
                        (service_cpu.0 - service_messages).max(0.0),
                    );
                }
                paragraphs.push(text);
            }
        }
        paragraphs
    }
}

impl Sample {
    /// `(bench, pg)` CPU µs per message.
    fn cpu_per_message_f64(&self) -> Option<(f64, f64)> {
        self.outcome.cpu.map(|usage| (self.micros_per_message(usage.process), self.micros_per_message(usage.postgres)))
    }
}

/// The hot row with the best median rate.
fn best<'a>(rows: impl Iterator<Item = &'a HotRow>) -> Option<&'a HotRow> {
    rows.max_by(|a, b| a.series.rate().total_cmp(&b.series.rate()))
}

/// `12.3 / 12 / 64`: mean, median and largest batch.
fn batch_sizes(batches: &Batches) -> String {
    match batches.batches {
        0 => String::new(),
        _ => format!("{:.1} / {} / {}", batches.mean(), batches.median, batches.max),
    }
}

/// Updates published and acknowledged per second.
fn published_cell(sample: &Sample) -> String {
    sample.published_rate().map_or_else(String::new, rate)
}

/// Where the rest of a send's CPU went: the rest of this process (groups and the load
/// generator), Postgres.
fn messages_cpu_breakdown(sample: &Sample) -> String {
    match sample.outcome.cpu {
        Some(usage) => format!(
            "per send: groups and the load generator {:.0} µs, Postgres {:.0} µs",
            sample.micros_per_message((usage.process - usage.service).max(0.0)),
            sample.micros_per_message(usage.postgres),
        ),
        None => String::new(),
    }
}

/// A rate, rounded: `12,345`.
fn rate(value: f64) -> String {
    count(value.max(0.0).round() as u64)
}

/// What the CPU split of a window says.
fn cpu_sentence(when: &str, usage: Option<CpuUsage>) -> String {
    let Some(usage) = usage else { return String::new() };
    let cores = usage.process + usage.postgres + usage.other + usage.idle;
    if usage.idle < 0.1 * cores {
        format!(
            "{when} the CPU was saturated ({:.2} of {cores:.0} cores idle: this process {:.2}, Postgres \
             {:.2}, other work on the machine {:.2}).",
            usage.idle, usage.process, usage.postgres, usage.other
        )
    } else {
        format!(
            "{when} {:.2} of {cores:.0} cores stayed idle (this process {:.2}, Postgres {:.2}, other \
             {:.2}): the wait was elsewhere, e.g. WAL flushes or the group's lock.",
            usage.idle, usage.process, usage.postgres, usage.other
        )
    }
}
