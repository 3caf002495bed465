//! W2's figures: the main window with each number of messages processes, side by side, the
//! messages outbox over it, and the sustained-rate series (the most groups of the same shape
//! whose deliveries all arrived with p99 under 50 ms).

use std::fmt::Write as _;
use std::time::Duration;

use super::sustain::{SUSTAIN_P99_MS, SUSTAIN_SHARE, Sustain, highest_sustained};
use super::{Measurement, Memory, Results, Role, count, ms};
use crate::fanout::backlog::Backlog;
use crate::report::{Table, verdict};

/// The W2 goal: deliveries per second achieved ÷ offered ("28,000 of 28,000", less what the
/// window's edges cost).
const W2_DELIVERY_SHARE: f64 = 0.99;
/// The W2 goal's bound on the outbox: its oldest row younger than the recovery grace
/// (`FANFARE_MESSAGES_OUTBOX_RECOVERY_GRACE_MS`), past which rows count as orphaned.
const BACKLOG_AGE_BOUND: Duration = Duration::from_secs(5);

/// One W2-shaped window: `groups` CHAT groups of `members`, each member sending 1 msg/s.
#[derive(Debug)]
pub(crate) struct W2Window {
    /// CHAT groups.
    pub groups: usize,
    /// Members (streams, senders) per group.
    pub members: usize,
    /// The window.
    pub measurement: Measurement,
    /// The messages outbox over the measured window.
    pub backlog: Backlog,
}

impl W2Window {
    /// Messages offered per second (every member sends one a second).
    fn offered_msgs(&self) -> f64 {
        (self.groups * self.members) as f64
    }

    /// Deliveries offered per second (each message to the other members).
    fn offered_deliveries(&self) -> f64 {
        self.offered_msgs() * self.members.saturating_sub(1) as f64
    }

    /// The figures the sustained-rate check reads.
    pub(crate) fn sustain(&self) -> Sustain {
        let m = &self.measurement;
        Sustain {
            p99_ms: m.received.percentile_ms(99.0),
            complete: m.complete,
            lost: m.lost(),
            out_of_order: m.health.out_of_order,
            failed_sends: m.sent.failed,
            sent_share: m.msgs_per_second() / self.offered_msgs().max(1.0),
            delivered_share: m.received.rate() / self.offered_deliveries().max(1.0),
        }
    }

    /// CPU µs the messages processes spent per message sent.
    fn messages_micros_per_send(&self) -> f64 {
        self.measurement.spent.micros(Role::Messages) / self.measurement.sent.measured.max(1) as f64
    }

    /// `28,000 / 27,986`.
    fn deliveries_cell(&self) -> String {
        format!(
            "{} / {}",
            count(self.offered_deliveries() as u64),
            count(self.measurement.received.rate().round() as u64)
        )
    }

    /// `412 rows / 35 ms / 12`: the most rows, the oldest row, the rows at the end.
    fn backlog_cell(&self) -> String {
        let backlog = &self.backlog;
        format!(
            "{} / {} / {}",
            rows(backlog.max_rows),
            ms(backlog.max_age.as_secs_f64() * 1e3),
            count(u64::try_from(backlog.at_end).unwrap_or(0))
        )
    }
}

/// `1 row`, `1,234 rows`.
fn rows(rows: i64) -> String {
    match rows {
        1 => "1 row".to_owned(),
        many => format!("{} rows", count(u64::try_from(many).unwrap_or(0))),
    }
}

/// `1 messages process`, `2 messages processes`.
pub(crate) fn messages_processes_label(processes: usize) -> String {
    match processes {
        1 => "1 messages process".to_owned(),
        many => format!("{many} messages processes"),
    }
}

/// W2 with one number of messages processes.
#[derive(Debug)]
pub(crate) struct W2Run {
    /// Messages processes the senders spread over.
    pub messages_processes: usize,
    /// The main window.
    pub window: W2Window,
    /// The fanout processes' memory in the main window.
    pub memory: Memory,
    /// What the fanout processes counted in the main window.
    pub notes: Vec<String>,
    /// The sustained-rate series, in order, up to the first step that did not hold.
    pub steps: Vec<W2Window>,
}

impl W2Run {
    /// `1 messages process`, `2 messages processes`.
    pub(crate) fn label(&self) -> String {
        messages_processes_label(self.messages_processes)
    }

    /// The step with the most groups that held.
    fn best_step(&self) -> Option<&W2Window> {
        let groups = highest_sustained(self.steps.iter().map(|step| (step.groups, step.sustain().holds())))?;
        self.steps.iter().find(|step| step.groups == groups)
    }

    /// The first step that did not hold (the series stops there).
    fn failed_step(&self) -> Option<&W2Window> {
        self.steps.iter().find(|step| !step.sustain().holds())
    }

    /// The main window meets the W2 goal: every delivery, p99 < 50 ms, outbox bounded.
    fn meets_w2_goal(&self) -> bool {
        let window = &self.window;
        let check = window.sustain();
        check.p99_ms < SUSTAIN_P99_MS
            && check.complete
            && check.lost == 0
            && check.out_of_order == 0
            && check.delivered_share >= W2_DELIVERY_SHARE
            && window.backlog.bounded_by(BACKLOG_AGE_BOUND)
    }
}

impl Results {
    /// Every Fanfare window of W2: the main ones, then the steps.
    pub(super) fn w2_measurements(&self) -> impl Iterator<Item = &Measurement> {
        self.w2.iter().flat_map(|run| {
            std::iter::once(&run.window.measurement).chain(run.steps.iter().map(|step| &step.measurement))
        })
    }

    /// The main window with each number of messages processes, side by side.
    pub(super) fn w2_table(&self) -> Table {
        let mut header = vec!["figure".to_owned()];
        header.extend(self.w2.iter().map(W2Run::label));
        let header: Vec<&str> = header.iter().map(String::as_str).collect();
        let mut table = Table::new(&header);
        type Cell = fn(&W2Window) -> String;
        let rows: [(&str, Cell); 14] = [
            ("streams (members)", |w| count(w.measurement.streams as u64)),
            ("messages offered / sent per second", |w| {
                format!(
                    "{} / {}",
                    count(w.offered_msgs() as u64),
                    count(w.measurement.msgs_per_second().round() as u64)
                )
            }),
            ("deliveries per second offered / achieved", W2Window::deliveries_cell),
            ("sends failed", |w| count(w.measurement.sent.failed)),
            ("latest a send went out after it was due", |w| {
                format!("{:.0} ms", w.measurement.sent.max_late.as_secs_f64() * 1e3)
            }),
            ("latency p50 / p99 / max", |w| {
                let received = &w.measurement.received;
                format!(
                    "{} / {} / {}",
                    ms(received.percentile_ms(50.0)),
                    ms(received.percentile_ms(99.0)),
                    ms(received.max_ms())
                )
            }),
            ("lost / out of order", |w| {
                format!("{} / {}", count(w.measurement.lost()), count(w.measurement.health.out_of_order))
            }),
            ("messages outbox: most rows / oldest row / rows at the end", W2Window::backlog_cell),
            ("echoes (a sender's own message on its own stream, not counted above)", |w| {
                count(w.measurement.received.echoes)
            }),
            ("messages CPU µs per send", |w| format!("{:.1}", w.messages_micros_per_send())),
            ("fanout CPU µs per delivery", |w| format!("{:.2}", w.measurement.server_micros())),
            ("all Fanfare CPU µs per delivery", |w| {
                format!("{:.2}", w.measurement.micros_per_delivery(w.measurement.spent.fanfare_micros()))
            }),
            ("redis / pg / bench CPU µs per delivery", |w| {
                let m = &w.measurement;
                format!(
                    "{:.2} / {:.2} / {:.2}",
                    m.micros_per_delivery(m.spent.micros(Role::Redis)),
                    m.micros_per_delivery(m.spent.micros(Role::Postgres)),
                    m.micros_per_delivery(m.spent.micros(Role::Bench))
                )
            }),
            ("CPU (cores)", |w| w.measurement.spent.describe()),
        ];
        for (figure, cell) in rows {
            let mut row = vec![figure.to_owned()];
            row.extend(self.w2.iter().map(|run| cell(&run.window)));
            table.row(row);
        }
        table
    }

    /// How to read the W2 table, and whether each run sustained the offered load.
    pub(super) fn w2_paragraph(&self) -> String {
        let members = self.args.w2_members;
        let mut text = format!(
            "Each message goes to the other {} members of its group (its sender's own stream gets it too, as an \
             echo, not counted). Sender j sends through messages process j mod their number, so with two the \
             members of a group alternate between them. The messages outbox was read every {} ms of the \
             measured window (`SELECT count(*), now() - min(committed_at) FROM messages.outbox`): a row is an \
             update committed and not yet acknowledged, published and deleted by the process that committed \
             it; the rows at the end were read once the last message had been sent. messages CPU per send = \
             the messages processes' CPU over the window ÷ messages sent.",
            members.saturating_sub(1),
            self.args.w2_sample_ms
        );
        for run in &self.w2 {
            let window = &run.window;
            let check = window.sustain();
            if check.holds() {
                let _ = write!(text, " With {} the machine sustained the offered load.", run.label());
            } else {
                let _ = write!(
                    text,
                    " With {} the machine did not sustain the offered load ({}): {} of {} msgs/s were sent (each \
                     sender keeps one send in flight and catches up when late), {} deliveries/s of {} offered \
                     arrived, with a median latency of {}; CPU over the window: {}.",
                    run.label(),
                    check.why_not(),
                    count(window.measurement.msgs_per_second().round() as u64),
                    count(window.offered_msgs() as u64),
                    count(window.measurement.received.rate().round() as u64),
                    count(window.offered_deliveries() as u64),
                    ms(window.measurement.received.percentile_ms(50.0)),
                    window.measurement.spent.describe()
                );
            }
        }
        text
    }

    /// Every step of every sustained-rate series.
    pub(super) fn sustain_table(&self) -> Table {
        let mut table = Table::new(&[
            "messages processes",
            "groups",
            "streams",
            "msgs/s offered / sent",
            "deliveries/s offered / achieved",
            "p50",
            "p99",
            "lost / out of order",
            "outbox: most / oldest row / at end",
            "messages µs/send",
            "CPU (cores)",
            "held",
        ]);
        for run in &self.w2 {
            for step in &run.steps {
                let m = &step.measurement;
                let check = step.sustain();
                table.row(vec![
                    run.messages_processes.to_string(),
                    count(step.groups as u64),
                    count(m.streams as u64),
                    format!("{} / {}", count(step.offered_msgs() as u64), count(m.msgs_per_second().round() as u64)),
                    step.deliveries_cell(),
                    ms(m.received.percentile_ms(50.0)),
                    ms(m.received.percentile_ms(99.0)),
                    format!("{} / {}", count(m.lost()), count(m.health.out_of_order)),
                    step.backlog_cell(),
                    format!("{:.1}", step.messages_micros_per_send()),
                    m.spent.describe(),
                    if check.holds() { "yes".to_owned() } else { format!("**no**: {}", check.why_not()) },
                ]);
            }
        }
        table
    }

    /// The highest sustained rate with each number of messages processes, and where the CPU
    /// went at the limit.
    pub(super) fn sustain_paragraph(&self) -> String {
        let mut text = format!(
            "Each step: fresh fanout processes, N new CHAT groups of {} members, every member streaming and \
             sending one message a second, {} s warm-up, {} s measured. A step holds when every delivery \
             arrived in order with p99 send → receive under {SUSTAIN_P99_MS:.0} ms, no send failed and at least \
             {:.0}% of the offered messages and deliveries per second went through; the series stops at the \
             first step that does not.",
            self.args.w2_members,
            super::trim(self.args.fanout_warm_up_seconds),
            super::trim(self.args.w2_sustain_seconds),
            SUSTAIN_SHARE * 100.0
        );
        for run in &self.w2 {
            match run.best_step() {
                Some(best) => {
                    let _ = write!(
                        text,
                        " With {}: {} groups held, {} deliveries/s ({} msgs/s), p99 {}; CPU {}.",
                        run.label(),
                        count(best.groups as u64),
                        count(best.measurement.received.rate().round() as u64),
                        count(best.measurement.msgs_per_second().round() as u64),
                        ms(best.measurement.received.percentile_ms(99.0)),
                        best.measurement.spent.describe(),
                    );
                }
                None => {
                    let _ = write!(text, " With {}: no step held.", run.label());
                }
            }
            match run.failed_step() {
                Some(failed) => {
                    let _ = write!(
                        text,
                        " {} groups did not ({}); CPU {}.",
                        count(failed.groups as u64),
                        failed.sustain().why_not(),
                        failed.measurement.spent.describe()
                    );
                }
                None if !run.steps.is_empty() => {
                    text.push_str(" Every step held: the machine's limit is above the series.");
                }
                None => {}
            }
        }
        text
    }

    /// The W2 goals: the main window sustained with the outbox bounded, per number of
    /// messages processes; the sustained rate rising with the second process.
    pub(super) fn w2_goals(&self, table: &mut Table) {
        for run in &self.w2 {
            let window = &run.window;
            let m = &window.measurement;
            table.row(vec![
                format!(
                    "W2 sustained with {}: {} of {} deliveries/s, p99 < {SUSTAIN_P99_MS:.0} ms, outbox bounded (oldest \
                     row under {} s) over {} s",
                    run.label(),
                    count(window.offered_deliveries() as u64),
                    count(window.offered_deliveries() as u64),
                    BACKLOG_AGE_BOUND.as_secs(),
                    super::trim(m.measured.as_secs_f64()),
                ),
                format!(
                    "{} deliveries/s, p99 {}, {} lost; outbox at most {}, oldest {}",
                    count(m.received.rate().round() as u64),
                    ms(m.received.percentile_ms(99.0)),
                    count(m.lost()),
                    rows(window.backlog.max_rows),
                    ms(window.backlog.max_age.as_secs_f64() * 1e3),
                ),
                verdict(run.meets_w2_goal()),
            ]);
        }
        let mut by_processes: Vec<&W2Run> = self.w2.iter().filter(|run| !run.steps.is_empty()).collect();
        by_processes.sort_by_key(|run| run.messages_processes);
        if let [fewest, .., most] = by_processes.as_slice() {
            let rate = |run: &W2Run| run.best_step().map_or(0.0, |step| step.measurement.received.rate());
            let groups = |run: &W2Run| run.best_step().map_or("none".to_owned(), |step| count(step.groups as u64));
            let capped = |run: &W2Run| run.failed_step().is_none();
            let measured = format!(
                "{} groups held ({} deliveries/s) with {}, {} ({} deliveries/s) with {}",
                groups(fewest),
                count(rate(fewest).round() as u64),
                fewest.label(),
                groups(most),
                count(rate(most).round() as u64),
                most.label(),
            );
            let (measured, met) = if capped(fewest) && capped(most) {
                (format!("{measured}: both held every step, so the series did not find either limit"), "n/a".to_owned())
            } else {
                let more_groups =
                    most.best_step().map_or(0, |step| step.groups) > fewest.best_step().map_or(0, |step| step.groups);
                (measured, verdict(more_groups))
            };
            table.row(vec![
                format!(
                    "scales with pods: the highest sustained W2-shaped rate rises from {} to {}",
                    fewest.label(),
                    most.label()
                ),
                measured,
                met,
            ]);
        }
    }

    /// The closing sentences on W2.
    pub(super) fn w2_reading(&self) -> Vec<String> {
        self.w2
            .iter()
            .map(|run| {
                let window = &run.window;
                let m = &window.measurement;
                format!(
                    "W2 ({} groups × {}, {}): {} deliveries/s of {} offered, p50 {} and p99 {}, fanout {:.2} µs of \
                     CPU per delivery ({:.2} µs for all three services), messages {:.1} µs per send; the messages \
                     outbox held at most {} and its oldest row was at most {} old ({} when the last message had \
                     been sent); over the window the machine was idle {} cores ({}).",
                    count(window.groups as u64),
                    window.members,
                    run.label(),
                    count(m.received.rate().round() as u64),
                    count(window.offered_deliveries() as u64),
                    ms(m.received.percentile_ms(50.0)),
                    ms(m.received.percentile_ms(99.0)),
                    m.server_micros(),
                    m.micros_per_delivery(m.spent.fanfare_micros()),
                    window.messages_micros_per_send(),
                    rows(window.backlog.max_rows),
                    ms(window.backlog.max_age.as_secs_f64() * 1e3),
                    rows(window.backlog.at_end),
                    m.spent.idle.map_or("?".to_owned(), |idle| format!("{idle:.2}")),
                    m.spent.describe(),
                )
            })
            .collect()
    }
}
