//! The goals of the fanout issue, judged against the figures, and the reading of the figures
//! that closes the section.

use std::fmt::Write as _;

use super::{Measurement, Results, Role, System, W1Size, count, ms, ratio};
use crate::fanout::jobs::JobFigures;
use crate::report::{Table, verdict};

/// The streams the latency goal is judged at.
const GOAL_STREAMS: usize = 10_000;
/// Goal: p99 send → receive at [`GOAL_STREAMS`] streams and 20,000 deliveries/s.
const P99_GOAL_MS: f64 = 50.0;
/// Goal: memory per open stream.
const MEMORY_GOAL_BYTES: f64 = 8.0 * 1024.0;
/// Goal: W3 followers notified per second.
const JOB_GOAL: f64 = 50_000.0;

impl Results {
    /// The goals table: each goal, what was measured, met or not.
    pub(super) fn goals(&self) -> Table {
        let mut table = Table::new(&["goal", "measured", "verdict"]);
        for size in &self.w1 {
            for fixed in [true, false] {
                let (Some(fanfare), Some(minimal)) =
                    (size.find(System::Fanfare, fixed), size.find(System::Minimal, fixed))
                else {
                    continue;
                };
                let load = if fixed { "fixed rate" } else { "saturation" };
                table.row(vec![
                    format!(
                        "server CPU per delivery below the minimal tonic server's (W1, {} streams, {load})",
                        count(size.streams as u64)
                    ),
                    format!("{:.2} vs {:.2} µs", fanfare.server_micros(), minimal.server_micros()),
                    verdict(fanfare.server_micros() < minimal.server_micros()),
                ]);
            }
        }
        match self.w1.iter().find(|size| size.streams == GOAL_STREAMS).and_then(|size| size.find(System::Fanfare, true))
        {
            Some(fixed) => {
                let met = fixed.received.percentile_ms(99.0) < P99_GOAL_MS
                    && fixed.received.rate() >= 0.95 * self.args.w1_deliveries_per_second as f64
                    && fixed.problems() == 0;
                table.row(vec![
                    format!(
                        "p99 send → receive < 50 ms at {} streams and {} deliveries/s",
                        count(GOAL_STREAMS as u64),
                        count(self.args.w1_deliveries_per_second)
                    ),
                    format!(
                        "{} at {} deliveries/s",
                        ms(fixed.received.percentile_ms(99.0)),
                        count(fixed.received.rate().round() as u64)
                    ),
                    verdict(met),
                ]);
            }
            None => table.row(vec![
                format!("p99 send → receive < 50 ms at {} streams", count(GOAL_STREAMS as u64)),
                "not measured (no 10,000-stream configuration)".to_owned(),
                "n/a".to_owned(),
            ]),
        }
        for size in &self.w1 {
            if let Some(memory) = size.memory_of(System::Fanfare) {
                let per_stream = memory.per_stream(size.streams);
                table.row(vec![
                    format!("memory per open stream < 8 KiB (W1, {} streams)", count(size.streams as u64)),
                    format!("{:.2} KiB", per_stream / 1024.0),
                    verdict(per_stream < MEMORY_GOAL_BYTES),
                ]);
            }
        }
        if let Some(w3) = &self.w3 {
            let (measured, met) = match &w3.outcome {
                Ok(job) => {
                    (format!("{} followers/s", count(job.rate().round() as u64)), verdict(job.rate() >= JOB_GOAL))
                }
                Err(reason) => (format!("not measured: {reason}"), "n/a".to_owned()),
            };
            table.row(vec!["W3 fan-out job ≥ 50,000 followers/s".to_owned(), measured, met]);
            if let Ok(job) = &w3.outcome {
                table.row(exactly_once_row(w3.followers, job));
            }
        }
        self.w2_goals(&mut table);
        let fanfare: Vec<&Measurement> = self.fanfare_measurements().collect();
        if !fanfare.is_empty() {
            let lost: u64 = fanfare.iter().map(|m| m.lost()).sum();
            let out_of_order: u64 = fanfare.iter().map(|m| m.health.out_of_order).sum();
            table.row(vec![
                "no delivery lost or out of order (every Fanfare window at its offered load)".to_owned(),
                format!("{} lost, {} out of order", count(lost), count(out_of_order)),
                verdict(lost == 0 && out_of_order == 0),
            ]);
        }
        table
    }

    /// The closing paragraphs: CPU per delivery, latency, memory, W2 and W3, then how busy
    /// the machine was.
    pub(super) fn reading(&self) -> Vec<String> {
        let mut cpu = Vec::new();
        for size in &self.w1 {
            cpu.extend(cpu_reading(size));
        }
        let latency = self.w1.iter().find(|size| size.streams == GOAL_STREAMS).and_then(latency_reading);
        let memory: Vec<String> = self.w1.iter().filter_map(memory_reading).collect();
        let mut others = Vec::new();
        others.extend(self.w2_reading());
        if let Some(w3) = &self.w3 {
            others.push(match &w3.outcome {
                Ok(job) => format!(
                    "The fan-out job notified {} followers at {} followers/s ({} the 50,000/s goal).",
                    count(u64::try_from(job.done).unwrap_or(0)),
                    count(job.rate().round() as u64),
                    if job.rate() >= JOB_GOAL { "meeting" } else { "missing" },
                ),
                Err(reason) => format!("W3 was not measured: {reason}."),
            });
        }
        let mut paragraphs: Vec<String> = [cpu.join(" "), latency.unwrap_or_default(), memory.join(" ")]
            .into_iter()
            .chain([others.join(" "), self.machine_reading()])
            .filter(|paragraph| !paragraph.is_empty())
            .collect();
        if paragraphs.is_empty() {
            paragraphs.push("Nothing was measured.".to_owned());
        }
        paragraphs
    }

    /// How much of the machine other work took during the windows.
    fn machine_reading(&self) -> String {
        let windows: Vec<&Measurement> =
            self.w1.iter().flat_map(|size| size.measurements.iter()).chain(self.w2_measurements()).collect();
        let others: Vec<f64> = windows.iter().filter_map(|m| m.spent.other).collect();
        let idles: Vec<f64> = windows.iter().filter_map(|m| m.spent.idle).collect();
        let mut text = "The machine has 2 cores and is shared with other engineers' builds and tests (the load \
                        average in the run details tells how busy it was): every figure here competes with that \
                        work, and the senders and receivers (bench) share the same cores as the servers."
            .to_owned();
        if let (Some(least), Some(most)) =
            (others.iter().copied().reduce(f64::min), others.iter().copied().reduce(f64::max))
        {
            let mean = others.iter().sum::<f64>() / others.len() as f64;
            let idle = idles.iter().sum::<f64>() / idles.len().max(1) as f64;
            let _ = write!(
                text,
                " Over the measured windows, processes outside the benchmark took {least:.2} to {most:.2} cores \
                 (mean {mean:.2}) and the machine was idle {idle:.2} cores on average."
            );
        }
        text
    }
}

/// W3's check: the push stream holds one entry per follower, each follower once.
fn exactly_once_row(followers: u64, job: &JobFigures) -> Vec<String> {
    let (measured, met) = match job.read_back {
        Some((entries, distinct, others)) => (
            format!(
                "XLEN {}, {} distinct followers, {} other entries",
                count(job.stream_len),
                count(distinct),
                count(others)
            ),
            job.stream_len == followers && entries == followers && distinct == followers && others == 0,
        ),
        None => (format!("XLEN {} (not read back)", count(job.stream_len)), job.stream_len == followers),
    };
    vec![
        format!("W3: each of the {} followers in the push stream exactly once", count(followers)),
        measured,
        verdict(met),
    ]
}

/// Server CPU per delivery at one W1 size, fixed rate and saturation, beside the baselines.
fn cpu_reading(size: &W1Size) -> Vec<String> {
    let mut sentences = Vec::new();
    if let (Some(fanfare), Some(minimal), Some(redis)) =
        (size.find(System::Fanfare, true), size.find(System::Minimal, true), size.find(System::Redis, true))
    {
        sentences.push(format!(
            "At {} streams and the fixed rate the fanout processes spent {:.2} µs of CPU per delivery, the minimal \
             tonic server {:.2} µs and redis-server {:.2} µs (goal {}: {}).",
            count(size.streams as u64),
            fanfare.server_micros(),
            minimal.server_micros(),
            redis.server_micros(),
            if fanfare.server_micros() < minimal.server_micros() { "met" } else { "not met" },
            ratio(fanfare.server_micros(), minimal.server_micros()),
        ));
    }
    if let (Some(fanfare), Some(minimal)) = (size.find(System::Fanfare, false), size.find(System::Minimal, false)) {
        let redis = size.find(System::Redis, false);
        sentences.push(format!(
            "At saturation Fanfare delivered {}/s (p99 {}), the minimal server {}/s{}; per delivery the fanout \
             processes spent {:.2} µs against the minimal server's {:.2} µs (goal {}).",
            count(fanfare.received.rate().round() as u64),
            ms(fanfare.received.percentile_ms(99.0)),
            count(minimal.received.rate().round() as u64),
            redis
                .map(|redis| format!(" and raw Redis {}/s", count(redis.received.rate().round() as u64)))
                .unwrap_or_default(),
            fanfare.server_micros(),
            minimal.server_micros(),
            if fanfare.server_micros() < minimal.server_micros() { "met" } else { "not met" },
        ));
    }
    sentences
}

/// Memory per open stream at one W1 size, beside the minimal server's.
fn memory_reading(size: &W1Size) -> Option<String> {
    let memory = size.memory_of(System::Fanfare)?;
    let per_stream = memory.per_stream(size.streams) / 1024.0;
    let minimal = size.memory_of(System::Minimal).map(|minimal| minimal.per_stream(size.streams) / 1024.0);
    Some(format!(
        "Memory per open stream at {} streams: {per_stream:.2} KiB ({}){}.",
        count(size.streams as u64),
        if per_stream * 1024.0 < MEMORY_GOAL_BYTES { "under the 8 KiB goal" } else { "over the 8 KiB goal" },
        minimal.map(|minimal| format!("; the minimal tonic server's {minimal:.2} KiB")).unwrap_or_default(),
    ))
}

/// What the latency goal's configuration says, with the baselines at the same load.
fn latency_reading(size: &W1Size) -> Option<String> {
    let fixed = size.find(System::Fanfare, true)?;
    let p99 = fixed.received.percentile_ms(99.0);
    let mut text = format!(
        "The latency goal (p99 < 50 ms at {} streams, 20,000 deliveries/s) was {}: p99 {} (p50 {}, max {}) at {} \
         deliveries/s.",
        count(size.streams as u64),
        if p99 < P99_GOAL_MS { "met" } else { "not met" },
        ms(p99),
        ms(fixed.received.percentile_ms(50.0)),
        ms(fixed.received.max_ms()),
        count(fixed.received.rate().round() as u64),
    );
    let baselines: Vec<String> = [System::Minimal, System::Redis]
        .into_iter()
        .filter_map(|system| size.find(system, true))
        .map(|m| format!("{} {}", m.system.label(), ms(m.received.percentile_ms(99.0))))
        .collect();
    if !baselines.is_empty() {
        let _ = write!(text, " At the same load the baselines' p99 was: {}.", baselines.join(", "));
    }
    // Each message is a burst of N deliveries; the last stream of a burst waits for the CPU
    // the servers and the receivers spend on all the others.
    let server = fixed.server_micros();
    let receivers = fixed.micros_per_delivery(fixed.spent.micros(Role::Bench));
    let burst_ms = |micros: f64| micros * size.streams as f64 / 1_000.0;
    let _ = write!(
        text,
        " The machine was mostly idle over the window (idle {} cores), but each message is a burst of {} \
         deliveries: at {server:.1} µs per delivery the fanout processes spend {:.0} ms of CPU on one, and the \
         receivers in this process ({receivers:.1} µs per delivery) {:.0} ms more, on the same two cores, so the \
         last stream of a burst cannot get the message much sooner than half that sum after the first. At this \
         rate every update goes out as a frame of its own on each stream.",
        fixed.spent.idle.map_or("?".to_owned(), |idle| format!("{idle:.2}")),
        count(size.streams as u64),
        burst_ms(server),
        burst_ms(receivers),
    );
    if let Some(saturated) = size.find(System::Fanfare, false) {
        let _ = write!(
            text,
            " At saturation, where queued updates share frames, the fanout processes spent {:.2} µs per delivery.",
            saturated.server_micros()
        );
    }
    Some(text)
}
