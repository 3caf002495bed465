//! W2, many small groups: CHAT groups of a few members, every member holding a stream and
//! sending one message a second.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use fanfare_proto::common::v1::GroupKind;
use futures::{StreamExt as _, TryStreamExt as _};

use super::load::{self, Publisher};
use super::probe::Role;
use super::results::{self, Load, Measurement, Memory, System, W2Run};
use super::tally::Board;
use super::{Bench, DRAIN_QUIET, SETTLE_PAUSE, W2_USERS, fanfare};

impl Bench<'_> {
    /// W2: many small CHAT groups, every member streaming and sending.
    pub(super) async fn w2(&mut self) -> anyhow::Result<W2Run> {
        self.fresh_fanouts().await?;
        let (groups, members) = (self.args.w2_groups, self.args.w2_members);
        let user = |group: usize, member: usize| W2_USERS + (group * members + member) as i64;
        let setup = std::time::Instant::now();
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
        let settled = fanfare::wait_settled(&self.admin).await?;
        eprintln!("fanout: W2: {groups} groups of {members} set up in {:.1?} (relays settled)", setup.elapsed());
        let _ = settled;

        // Stream i is member i % members of group i / members: each group's members alternate
        // between the fanout processes.
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
            fanfare::FanfareSender::connect(&self.cluster.messages.url(), self.args.fanout_send_channels, routes)
                .await?,
        );
        let counters_before = self.cluster.fanout_counters().await;
        let measured = Duration::from_secs_f64(self.args.w2_seconds);
        let windows = self.windows(measured);
        let before = board.health();
        let senders = u32::try_from(users.len())?;
        let (sent, start) = load::open_loop(senders, Duration::from_secs(1), windows, sender, &board, &watched).await?;
        // What the messages relay had not yet published when the last message was stored.
        let outbox_backlog: i64 = sqlx::query_scalar("SELECT count(*) FROM messages.outbox")
            .fetch_one(&self.admin)
            .await
            .context("counting the messages outbox")?;
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
        eprintln!("{}", measurement.summary());
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
        Ok(W2Run { groups, members, measurement, memory, notes, outbox_backlog })
    }
}
