//! W2, many small groups: CHAT groups of a few members, every member holding a stream and
//! sending one message a second. Run once per number of messages processes (sender j sends
//! through process j mod their number): the main window, then the sustained-rate series,
//! more groups of the same shape each step, until a step no longer holds.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use fanfare_proto::common::v1::GroupKind;
use futures::{StreamExt as _, TryStreamExt as _};

use super::backlog::Sampler;
use super::load::{self, Publisher};
use super::probe::Role;
use super::results::{self, Load, Measurement, Memory, System, W2Run, W2Window};
use super::tally::Board;
use super::{Bench, DRAIN_QUIET, SETTLE_PAUSE, W2_USERS, fanfare};

/// How long past its measured window the outbox sampler may run at most.
const SAMPLER_MARGIN: Duration = Duration::from_secs(10);

/// One W2-shaped window with what came with it.
struct Windowed {
    window: W2Window,
    memory: Memory,
    notes: Vec<String>,
}

impl Bench<'_> {
    /// W2 with each number of messages processes asked for, then one process again.
    pub(super) async fn w2(&mut self) -> anyhow::Result<Vec<W2Run>> {
        let mut runs = Vec::new();
        let counts = self.args.w2_messages_processes.clone();
        for processes in counts {
            self.cluster.set_messages_processes(processes).await?;
            let run = self.w2_with(processes).await.with_context(|| format!("with {processes} messages processes"))?;
            runs.push(run);
        }
        self.cluster.set_messages_processes(1).await?;
        Ok(runs)
    }

    /// The main window, then the sustained-rate series, on the messages processes running.
    async fn w2_with(&mut self, processes: usize) -> anyhow::Result<W2Run> {
        let main = Duration::from_secs_f64(self.args.w2_seconds);
        let Windowed { window, memory, mut notes } = self.w2_window(self.args.w2_groups, main).await?;
        let step_window = Duration::from_secs_f64(self.args.w2_sustain_seconds.max(1.0));
        let mut steps = Vec::new();
        for groups in self.args.w2_sustain_groups.clone().into_iter().filter(|groups| *groups > 0) {
            // A step that cannot run (setup timed out behind an overloaded one, a process
            // died) ends the series; the windows already measured stand.
            let step = match self.w2_window(groups, step_window).await {
                Ok(step) => step.window,
                Err(error) => {
                    eprintln!("fanout: W2 sustained rate, {groups} groups, could not run: {error:#}");
                    notes.push(format!("the sustained-rate step with {groups} groups could not run ({error:#})"));
                    self.cluster.check_alive()?;
                    break;
                }
            };
            let check = step.sustain();
            eprintln!(
                "fanout: W2 sustained rate with {}, {groups} groups: {}",
                results::messages_processes_label(processes),
                if check.holds() { "held".to_owned() } else { format!("did not hold ({})", check.why_not()) }
            );
            steps.push(step);
            if !check.holds() {
                break;
            }
        }
        Ok(W2Run { messages_processes: processes, window, memory, notes, steps })
    }

    /// Sets up `groups` new CHAT groups, opens their members' streams on fresh fanout
    /// processes, and runs one warm-up and measured window of `measured`, sampling the
    /// messages outbox meanwhile.
    async fn w2_window(&mut self, groups: usize, measured: Duration) -> anyhow::Result<Windowed> {
        self.fresh_fanouts().await?;
        let members = self.args.w2_members;
        // Every window has users and groups of its own.
        let first_user = W2_USERS + self.w2_users_taken;
        self.w2_users_taken += i64::try_from(groups * members)?;
        let user = |group: usize, member: usize| first_user + (group * members + member) as i64;
        let setup = Instant::now();
        let ids: Vec<i64> = futures::stream::iter(0..groups)
            .map(|group| {
                let client = self.groups.clone();
                async move { fanfare::create_group(&client, user(group, 0), GroupKind::Chat, "bench chat").await }
            })
            .buffered(16)
            .try_collect()
            .await?;
        let memberships = ids
            .iter()
            .enumerate()
            .map(|(group, id)| (*id, user(group, 0), (1..members).map(|member| user(group, member)).collect()))
            .collect();
        fanfare::add_members_to_each(&self.groups, memberships).await?;
        fanfare::wait_settled(&self.admin).await?;
        eprintln!("fanout: W2: {groups} groups of {members} set up in {:.1?} (outboxes settled)", setup.elapsed());

        // Stream i is member i % members of group i / members: each group's members alternate
        // between the fanout processes (and, as senders, between the messages processes).
        let users: Vec<i64> = (0..groups * members).map(|index| user(index / members, index % members)).collect();
        let routes: Vec<(i64, i64)> = (0..groups * members).map(|index| (users[index], ids[index / members])).collect();
        let watched = self.watched();
        let idle = watched.rss(Role::Fanout);
        let board = Board::new();
        board.set_receivers((members - 1) as u32);
        let open = fanfare::open_streams(&self.cluster.fanout_urls(), &users, self.args.streams_per_connection, &board)
            .await?;
        tokio::time::sleep(SETTLE_PAUSE).await;
        let with_streams = watched.rss(Role::Fanout);
        eprintln!("fanout: W2: {} streams open in {:.1?}", users.len(), open.took);
        let sender: Arc<dyn Publisher> = Arc::new(
            fanfare::FanfareSender::connect(&self.cluster.messages_urls(), self.args.fanout_send_channels, routes)
                .await?,
        );
        let counters_before = self.cluster.fanout_counters().await;
        let windows = self.windows(measured);
        let before = board.health();
        let senders = u32::try_from(users.len())?;
        // The open loop starts 100 ms from now, then warms up.
        let measured_from = Instant::now() + Duration::from_millis(100) + windows.warm_up;
        let period = Duration::from_millis(self.args.w2_sample_ms);
        let sampler = Sampler::start(self.admin.clone(), measured_from, period, measured + SAMPLER_MARGIN);
        let (sent, start) = load::open_loop(senders, Duration::from_secs(1), windows, sender, &board, &watched).await?;
        let backlog = sampler.finish(&self.admin).await?;
        let expected = sent.measured * (members as u64 - 1);
        let complete = load::drain(&board, windows.measured_id, expected, DRAIN_QUIET).await;
        let spent = start.until(&watched.snapshot());
        let received = board.collect(windows.measured_id);
        let health = received.health.minus(&before);
        let measurement = Measurement {
            system: System::Fanfare,
            streams: users.len(),
            load: Load::Fixed { senders, period: Duration::from_secs(1) },
            measured,
            sent,
            expected,
            complete,
            received,
            health,
            spent,
        };
        eprintln!(
            "{}; outbox max {} rows, oldest {} ms, {} at the end",
            measurement.summary(),
            backlog.max_rows,
            backlog.max_age.as_millis(),
            backlog.at_end
        );
        let memory = Memory {
            system: System::Fanfare,
            idle,
            open: with_streams,
            after: watched.rss(Role::Fanout),
            opened_in: open.took,
        };
        let notes = results::counter_notes(&counters_before, &self.cluster.fanout_counters().await);
        open.close();
        self.cluster.check_alive()?;
        Ok(Windowed { window: W2Window { groups, members, measurement, backlog }, memory, notes })
    }
}
