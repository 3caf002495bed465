//! The report section: how the figures were taken, the tables, what the fanout processes
//! counted and logged, then the goals and the reading of the figures ([`super::goals`]).

use super::super::payload::PAYLOAD_BYTES;
use super::{Measurement, Results, Role, System, count, ordered, seconds, trim, window_notes};
use crate::fanout::jobs::JobRun;
use crate::report::{Section, Table};

impl Results {
    /// The report section.
    pub(crate) fn section(&self) -> Section {
        let mut section = Section::new("Fanout: live delivery (W1, W2) and fan-out jobs (W3)");
        section.paragraph(self.method());
        section.heading("Goals");
        section.table(self.goals());
        if !self.w1.is_empty() {
            section.heading("W1: creator broadcast, delivery and latency");
            section.table(self.w1_latency());
            section.paragraph(format!(
                "msgs/s = messages sent per second in the measured window; deliveries/s = deliveries ÷ (last \
                 receive − first send); latency = receive − send time carried in the message, nearest-rank over \
                 every delivery of the window; lost = expected deliveries not received 5 s after the last one \
                 arrived; out of order = an update whose event_seq was not above the previous one on its stream, \
                 or whose sender's sequence went back (a jump in event_seq, a hole, counts as lost). {}",
                self.update_sizes()
            ));
            section.heading("W1: CPU per delivery");
            section.table(self.w1_cpu());
            section.paragraph(
                "µs of CPU time (utime + stime from `/proc/<pid>/stat`) per delivery over the measured window, \
                 from its first send to its last delivery. server = the fanout processes for Fanfare, \
                 redis-server for raw pub/sub, the minimal server's process for tonic. all Fanfare = fanout + \
                 groups + messages. redis and pg are the whole shared servers (other users included). bench = \
                 this process: the senders and the receivers decoding every delivery. CPU = average cores over \
                 the window.",
            );
        }
        section.heading("Memory per open stream");
        section.table(self.memory());
        section.paragraph(
            "RSS (`VmRSS` of `/proc/<pid>/status`, summed over the fanout processes) before any stream opened, \
             1 s after the last one opened (before any message), and after the windows with the streams still \
             open; per stream = (open − idle) ÷ streams. Fresh fanout processes for each configuration. For raw \
             Redis the process is the shared redis-server and a stream is a subscriber connection.",
        );
        if !self.w2.is_empty() {
            section.heading("W2: many small groups");
            section.table(self.w2_table());
            section.paragraph(self.w2_paragraph());
            if self.w2.iter().any(|run| !run.steps.is_empty()) {
                section.heading("W2: the highest sustained rate");
                section.table(self.sustain_table());
                section.paragraph(self.sustain_paragraph());
            }
        }
        if let Some(w3) = &self.w3 {
            section.heading("W3: fan-out job");
            section.table(w3_table(w3));
        }
        section.heading("What the fanout processes counted and logged");
        section.paragraph(self.notes());
        section.heading("Reading the figures");
        for paragraph in self.reading() {
            section.paragraph(paragraph);
        }
        section
    }

    fn method(&self) -> String {
        let args = &self.args;
        format!(
            "Unlike the sections above, every service here is a separate process of the release `fanfare` \
             binary (`fanfare serve groups|messages|fanout`), started by the benchmark on a fresh, migrated \
             database and a Redis namespace of its own, so that each process's CPU time and memory can be read \
             from `/proc`. {} fanout processes share the Redis; stream g connects to process g mod {}, so every \
             group has listeners on both and every update reaches the second only through Redis. Each messages \
             process runs with the per-user send limit off and room for 16,384 calls in flight, groups and \
             fanout with their per-user change limits off; everything else is the services' defaults \
             (stream inbox 256, one Redis subscriber per fanout process). Clients are in this process: streams \
             share HTTP/2 connections, {} streams each, within what both servers allow: Fanfare's advertise \
             `SETTINGS_MAX_CONCURRENT_STREAMS` {} (`FANFARE_MAX_CONCURRENT_STREAMS`), the minimal server keeps \
             tonic's default of no limit (tonic 0.14 passes `None` to hyper, overriding hyper's own default of \
             200). Every message is a `SendMessage` with a {PAYLOAD_BYTES}-byte ASCII text \
             carrying its window, sender, sequence number and send time (CLOCK_MONOTONIC µs); each receiver \
             decodes every update and checks event_seq order per stream. Members are added with `AddMembers` \
             (100 per call) and the groups and messages outboxes left to drain before any stream opens. W1: \
             one BROADCAST group, N member streams, the owner sending open-loop at {} deliveries/s offered \
             (one sender; a late sender does not skip messages), {} s warm-up then {} s measured; then \
             saturation: {} messages in flight end to end (each of {} slots sends its next message once its \
             previous one reached every stream), same windows. The baselines run right after{}, on the same \
             machine: raw Redis pub/sub (N subscriber connections of the `redis` crate's async pub/sub on one \
             channel, the encoded update PUBLISHed by this process) and a minimal tonic server-streaming server \
             in its own process (`fanfare-bench minimal-stream-server`: `Publish` puts the update on a tokio \
             broadcast channel, each stream's task receives its own clone and tonic encodes it per stream, on \
             tokio's default runtime), fed updates of the same shape and size at the same rates. The `fanfare` \
             processes run tokio without its LIFO slot (`crates/fanfare/src/main.rs`), so an HTTP/2 connection \
             writes the frames of all its woken streams at once. W2: {} CHAT groups × {} members, every \
             member streaming and sending one message a second, start times spread evenly, {} s measured, the \
             messages outbox read every {} ms; then the sustained-rate series ({} groups, {} s measured each, \
             stopping at the first step that does not hold); all of W2 with {} messages processes in turn (on \
             the same database and Redis namespace, sender j sending through process j mod their number; W1 \
             and W3 run with one). W3: {} follow edges and counters written straight into Postgres, then one \
             job at rate_limit_per_second {} polled until it finishes. One run of each (WORKLOADS.md asks for \
             three).",
            args.fanout_processes,
            args.fanout_processes,
            args.streams_per_connection,
            count(u64::from(fanfare_core::config::DEFAULT_MAX_CONCURRENT_STREAMS)),
            count(args.w1_deliveries_per_second),
            trim(args.fanout_warm_up_seconds),
            trim(args.w1_seconds),
            args.saturation_slots,
            args.saturation_slots,
            if args.skip_baselines { " (skipped in this run)" } else { "" },
            args.w2_groups,
            args.w2_members,
            trim(args.w2_seconds),
            args.w2_sample_ms,
            list(&args.w2_sustain_groups),
            trim(args.w2_sustain_seconds),
            list(&args.w2_messages_processes),
            count(args.w3_followers),
            count(u64::try_from(args.w3_rate).unwrap_or(0)),
        )
    }

    /// Every window of Fanfare itself at its offered load: W1 and W2's main windows (the
    /// sustained-rate series goes past what the machine sustains on purpose).
    pub(super) fn fanfare_measurements(&self) -> impl Iterator<Item = &Measurement> {
        self.w1
            .iter()
            .flat_map(|size| size.measurements.iter())
            .chain(self.w2.iter().map(|run| &run.window.measurement))
            .filter(|m| m.system == System::Fanfare)
    }

    fn w1_latency(&self) -> Table {
        let mut table = Table::new(&[
            "streams",
            "system",
            "load",
            "msgs/s",
            "deliveries/s",
            "p50",
            "p99",
            "max",
            "lost",
            "out of order",
        ]);
        for size in &self.w1 {
            for measurement in ordered(&size.measurements) {
                table.row(measurement.latency_row(count(size.streams as u64)));
            }
        }
        table
    }

    /// The mean encoded size of the updates each system delivered.
    fn update_sizes(&self) -> String {
        let mean = |system: System| {
            let (bytes, updates) = self
                .w1
                .iter()
                .flat_map(|size| size.measurements.iter())
                .filter(|m| m.system == system)
                .fold((0, 0), |(bytes, updates), m| (bytes + m.health.update_bytes, updates + m.health.updates));
            (updates > 0).then(|| bytes / updates)
        };
        match (mean(System::Fanfare), mean(System::Minimal).or(mean(System::Redis))) {
            (Some(fanfare), Some(baseline)) => format!(
                "An update as delivered is {fanfare} bytes encoded through Fanfare and {baseline} bytes through the \
                 baselines (the same message fields)."
            ),
            _ => String::new(),
        }
    }

    fn w1_cpu(&self) -> Table {
        let mut table = Table::new(&[
            "streams",
            "system",
            "load",
            "server µs/delivery",
            "all Fanfare µs/delivery",
            "redis µs/delivery",
            "pg µs/delivery",
            "bench µs/delivery",
            "CPU (cores)",
        ]);
        for size in &self.w1 {
            for measurement in ordered(&size.measurements) {
                table.row(measurement.cpu_row(count(size.streams as u64)));
            }
        }
        table
    }

    fn memory(&self) -> Table {
        let mut table = Table::new(&[
            "workload",
            "system",
            "RSS idle",
            "RSS streams open",
            "KiB per stream",
            "RSS after load",
            "opening took",
        ]);
        for size in &self.w1 {
            for memory in &size.memory {
                if memory.system == System::Redis && !self.redis_visible {
                    continue;
                }
                table.row(memory.row(format!("W1, {} streams", count(size.streams as u64)), size.streams));
            }
        }
        for run in &self.w2 {
            let streams = run.window.groups * run.window.members;
            table.row(run.memory.row(format!("W2, {} streams, {}", count(streams as u64), run.label()), streams));
        }
        table
    }

    fn notes(&self) -> String {
        let mut lines = Vec::new();
        for size in &self.w1 {
            for note in &size.notes {
                lines.push(format!("W1, {} streams: {note}.", count(size.streams as u64)));
            }
            for measurement in &size.measurements {
                lines.extend(window_notes(measurement, &format!("W1, {} streams", count(size.streams as u64))));
            }
        }
        for run in &self.w2 {
            let scenario = format!("W2, {}", run.label());
            for note in &run.notes {
                lines.push(format!("{scenario}: {note}."));
            }
            lines.extend(window_notes(&run.window.measurement, &scenario));
        }
        match self.problems.as_slice() {
            [] => lines.push("The services logged no warning or error.".to_owned()),
            problems => {
                let listed: Vec<String> =
                    problems.iter().take(8).map(|(message, times)| format!("`{message}` ({times}×)")).collect();
                lines.push(format!("Warnings and errors the services logged: {}.", listed.join("; ")));
            }
        }
        lines.join(" ")
    }
}

/// `1, 2` or `500, 750, 1,000`.
fn list(values: &[usize]) -> String {
    let listed: Vec<String> = values.iter().map(|value| count(*value as u64)).collect();
    listed.join(", ")
}

fn w3_table(w3: &JobRun) -> Table {
    let mut table = Table::new(&["figure", "value"]);
    let mut row = |figure: &str, value: String| table.row(vec![figure.to_owned(), value]);
    row(
        "followers (GetFollowCounts)",
        format!("{} ({})", count(w3.followers), count(u64::try_from(w3.counted).unwrap_or(0))),
    );
    row("writing edges and counters (one INSERT … generate_series each)", format!("{:.1} s", w3.insert.as_secs_f64()));
    match &w3.outcome {
        Err(reason) => row("job", format!("not measured: {reason}")),
        Ok(job) => {
            row("rate_limit_per_second", count(u64::try_from(job.rate_limit).unwrap_or(0)));
            row("state", job.state.clone());
            row(
                "followers notified / at start",
                format!(
                    "{} / {}",
                    count(u64::try_from(job.done).unwrap_or(0)),
                    count(u64::try_from(job.total).unwrap_or(0))
                ),
            );
            row("running (first claim → last checkpoint)", seconds(job.running));
            row("followers notified per second", count(job.rate().round() as u64));
            row("time to the last notification (StartFanoutJob → finished)", seconds(job.created_to_finished));
            row("observed by polling every 200 ms", format!("{:.1} s", job.observed.as_secs_f64()));
            row("push stream XLEN", count(job.stream_len));
            match job.read_back {
                Some((entries, distinct, others)) => row(
                    "push stream read back: entries / distinct followers / others",
                    format!("{} / {} / {}", count(entries), count(distinct), count(others)),
                ),
                None => row("push stream read back", "skipped".to_owned()),
            }
            let per = |micros: f64| format!("{:.2}", micros / job.done.max(1) as f64);
            row(
                "CPU µs per follower: fanout / redis / pg / bench",
                format!(
                    "{} / {} / {} / {}",
                    per(job.spent.micros(Role::Fanout)),
                    per(job.spent.micros(Role::Redis)),
                    per(job.spent.micros(Role::Postgres)),
                    per(job.spent.micros(Role::Bench))
                ),
            );
            row("CPU (cores)", job.spent.describe());
        }
    }
    table
}
