//! W1, creator broadcast: one BROADCAST group, N member streams, the owner sending at a
//! fixed rate then at saturation; then, at the same N and the same rates, raw Redis pub/sub
//! with N subscriber connections and the minimal tonic server with N streams.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use fanfare_proto::common::v1::GroupKind;

use super::load::Publisher;
use super::probe::{self, Role, Watched};
use super::results::{self, Load, Memory, System, W1Size};
use super::tally::Board;
use super::{Bench, SETTLE_PAUSE, W1_USERS, baseline, cluster, fanfare};

impl Bench<'_> {
    /// W1 with `streams` member streams, then its baselines.
    pub(super) async fn w1(&mut self, index: usize, streams: usize) -> anyhow::Result<W1Size> {
        self.fresh_fanouts().await?;
        let owner = W1_USERS * (index as i64 + 1);
        let members: Vec<i64> = (1..=streams as i64).map(|offset| owner + offset).collect();
        let group = fanfare::create_group(&self.groups, owner, GroupKind::Broadcast, "bench broadcast").await?;
        let setup = std::time::Instant::now();
        fanfare::add_members(&self.groups, owner, group, &members).await?;
        let added = setup.elapsed();
        let settled = fanfare::wait_settled(&self.admin).await?;
        eprintln!(
            "fanout: W1 N={streams}: {streams} members added in {added:.1?}, outboxes settled {settled:.1?} later"
        );

        let rate = self.args.w1_deliveries_per_second as f64 / streams as f64;
        let period = Duration::from_secs_f64(1.0 / rate.max(f64::EPSILON));
        let measured = Duration::from_secs_f64(self.args.w1_seconds.max(1.0));
        let mut size = W1Size { streams, measurements: Vec::new(), memory: Vec::new(), notes: Vec::new() };

        // Fanfare.
        let watched = self.watched();
        let idle = watched.rss(Role::Fanout);
        let board = Board::new();
        board.set_receivers(streams as u32);
        let open =
            fanfare::open_streams(&self.cluster.fanout_urls(), &members, self.args.streams_per_connection, &board)
                .await?;
        tokio::time::sleep(SETTLE_PAUSE).await;
        let with_streams = watched.rss(Role::Fanout);
        eprintln!("fanout: W1 N={streams}: streams open in {:.1?} over {} connections", open.took, open.connections);
        let sender: Arc<dyn Publisher> = Arc::new(
            fanfare::FanfareSender::connect(&self.cluster.messages_urls()[..1], 1, vec![(owner, group)]).await?,
        );
        let counters_before = self.cluster.fanout_counters().await;
        for load in self.w1_loads(period) {
            let measurement =
                self.measure(System::Fanfare, streams, load, &board, Arc::clone(&sender), &watched, measured).await?;
            eprintln!("{}", measurement.summary());
            size.measurements.push(measurement);
        }
        size.memory.push(Memory {
            system: System::Fanfare,
            idle,
            open: with_streams,
            after: watched.rss(Role::Fanout),
            opened_in: open.took,
        });
        size.notes.extend(results::counter_notes(&counters_before, &self.cluster.fanout_counters().await));
        open.close();
        self.cluster.check_alive()?;

        if !self.args.skip_baselines {
            self.w1_redis(&mut size, period, measured).await?;
            self.w1_minimal(&mut size, period, measured).await?;
        }
        Ok(size)
    }

    /// The fixed rate, then saturation.
    fn w1_loads(&self, period: Duration) -> Vec<Load> {
        let mut loads = vec![Load::Fixed { senders: 1, period }];
        if self.args.saturation_slots > 0 {
            loads.push(Load::Saturation { slots: self.args.saturation_slots });
        }
        loads
    }

    /// Raw Redis pub/sub with as many subscriber connections as W1 has streams.
    async fn w1_redis(&mut self, size: &mut W1Size, period: Duration, measured: Duration) -> anyhow::Result<()> {
        let streams = size.streams;
        let mut connection = self.redis.get_multiplexed_async_connection().await?;
        let raised = raise_max_clients(&mut connection, streams).await?;
        if let Some((from, to)) = raised {
            size.notes.push(format!(
                "Redis `maxclients` was raised from {from} to {to} for the {streams} raw subscribers, and set back after"
            ));
        }
        let outcome = async {
            let watched = Watched { processes: Vec::new(), redis: self.redis_pid };
            let idle = self.redis_pid.and_then(probe::rss_bytes).unwrap_or(0);
            let board = Board::new();
            board.set_receivers(streams as u32);
            let channel = format!("fanfare-bench-{}:raw", uuid::Uuid::new_v4().simple());
            let receivers = baseline::subscribe_redis(&self.redis, &channel, streams, &board).await?;
            tokio::time::sleep(SETTLE_PAUSE).await;
            let open = self.redis_pid.and_then(probe::rss_bytes).unwrap_or(0);
            let publisher: Arc<dyn Publisher> =
                Arc::new(baseline::RedisPublisher::connect(&self.redis, &channel).await?);
            for load in self.w1_loads(period) {
                let measurement = self
                    .measure(System::Redis, streams, load, &board, Arc::clone(&publisher), &watched, measured)
                    .await?;
                eprintln!("{}", measurement.summary());
                size.measurements.push(measurement);
            }
            let after = self.redis_pid.and_then(probe::rss_bytes).unwrap_or(0);
            if self.redis_pid.is_some() {
                size.memory.push(Memory { system: System::Redis, idle, open, after, opened_in: receivers.took });
            }
            receivers.close();
            anyhow::Ok(())
        }
        .await;
        if let Some((from, _)) = raised {
            restore_max_clients(&mut connection, from).await;
        }
        outcome
    }

    /// The minimal tonic streaming server with as many streams as W1 has.
    async fn w1_minimal(&mut self, size: &mut W1Size, period: Duration, measured: Duration) -> anyhow::Result<()> {
        let streams = size.streams;
        let server = cluster::spawn_minimal(&self.logs).await?;
        let outcome = async {
            let watched = Watched { processes: vec![(Role::Minimal, server.pid)], redis: None };
            let idle = watched.rss(Role::Minimal);
            let board = Board::new();
            board.set_receivers(streams as u32);
            let receivers =
                baseline::open_minimal_streams(&server.url(), streams, self.args.streams_per_connection, &board)
                    .await?;
            tokio::time::sleep(SETTLE_PAUSE).await;
            let open = watched.rss(Role::Minimal);
            let publisher: Arc<dyn Publisher> = Arc::new(baseline::MinimalPublisher::connect(&server.url()).await?);
            for load in self.w1_loads(period) {
                let measurement = self
                    .measure(System::Minimal, streams, load, &board, Arc::clone(&publisher), &watched, measured)
                    .await?;
                eprintln!("{}", measurement.summary());
                size.measurements.push(measurement);
            }
            let after = watched.rss(Role::Minimal);
            size.memory.push(Memory { system: System::Minimal, idle, open, after, opened_in: receivers.took });
            receivers.close();
            anyhow::Ok(())
        }
        .await;
        server.stop().await;
        outcome
    }
}

/// Raises Redis `maxclients` when `subscribers` more connections would not fit beside the
/// ones open now; returns `(before, after)` when it did.
async fn raise_max_clients(
    connection: &mut redis::aio::MultiplexedConnection,
    subscribers: usize,
) -> anyhow::Result<Option<(usize, usize)>> {
    let (_, max): (String, usize) =
        redis::cmd("CONFIG").arg("GET").arg("maxclients").query_async(connection).await.context("maxclients")?;
    let info: String = redis::cmd("INFO").arg("clients").query_async(connection).await.context("INFO clients")?;
    let connected: usize = info
        .lines()
        .find_map(|line| line.strip_prefix("connected_clients:"))
        .and_then(|count| count.trim().parse().ok())
        .unwrap_or(0);
    let needed = connected + subscribers + 500;
    if needed <= max {
        return Ok(None);
    }
    redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxclients")
        .arg(needed)
        .query_async::<()>(connection)
        .await
        .with_context(|| format!("raising Redis maxclients from {max} to {needed} for the raw subscribers"))?;
    Ok(Some((max, needed)))
}

async fn restore_max_clients(connection: &mut redis::aio::MultiplexedConnection, value: usize) {
    let restored = redis::cmd("CONFIG").arg("SET").arg("maxclients").arg(value).query_async::<()>(connection).await;
    if let Err(error) = restored {
        eprintln!("fanout: could not set Redis maxclients back to {value}: {error}");
    }
}
