//! Live delivery: the `Subscribe` stream of each online user, fed from the update bus.
//!
//! - [`hub`]: the pod's one bus subscriber; a channel per group with at least one local
//!   stream, reference-counted; each update decoded once and its bytes shared.
//! - [`inbox`]: each stream's bounded queue; a full one marks the group for catch-up instead
//!   of blocking anyone.
//! - [`stream`]: per stream, per group, the last delivered event_seq; duplicates skipped,
//!   holes repaired from the messages service's log before anything later goes out.
//! - [`cursor`]: where a stream stands in each group's log, and the resume cursor it hands
//!   out (requests are parsed by `crate::grpc::parse`).
//! - [`reorder`]: updates that arrive ahead of their predecessor, held back briefly.
//! - [`upstream`]: the user's groups (groups service) and the update log (messages service).
//! - [`notify`]: fan-out job notifications broadcast to every pod, delivered to local
//!   streams of the followers listed.
//!
//! docs/fanout.md ("Live delivery") describes the guarantees and the frames.

pub(crate) mod cursor;
mod hub;
mod inbox;
pub mod notify;
mod reorder;
mod stream;
mod upstream;

use std::sync::Arc;
use std::time::Duration;

use fanfare_bus::UpdateBus;
use fanfare_core::ids::UserId;
use fanfare_core::rate_limit::{LimitQuota, UserLimit};
use tokio_util::sync::CancellationToken;

use crate::config::LiveConfig;
use crate::error::{FanoutError, FanoutResult, LimitedAction};
use crate::metrics::DELIVERIES_TOTAL;

pub(crate) use stream::{LiveStream, Resume};

use self::hub::Hub;
use self::stream::StreamSettings;
use self::upstream::Upstream;

/// Live delivery on one pod.
pub struct Live {
    hub: Arc<Hub>,
    upstream: Upstream,
    settings: Arc<StreamSettings>,
    /// Subscribe calls per user: each one catches up from the log.
    open_limit: Option<UserLimit>,
    shutdown: CancellationToken,
}

impl Live {
    /// Subscribes the pod to the bus and connects (lazily) to the groups and messages
    /// services (over `tls` for `https://` URLs); streams end with a reconnect frame once
    /// `shutdown` is cancelled.
    pub async fn start(
        config: &LiveConfig,
        service_token: Option<&str>,
        tls: &fanfare_core::tls::ClientTls,
        bus: Arc<dyn UpdateBus>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Arc<Self>> {
        let open_limit = LimitQuota::per_minute(config.user_subscribes_per_minute, config.user_subscribes_burst)
            .and_then(|quota| UserLimit::with_quota("subscribes", quota, bus.shared_limits()));
        let hub = Hub::start(bus, Duration::from_millis(config.heartbeat_ms), shutdown.clone()).await;
        let upstream = Upstream::connect(config, service_token, tls)?;
        let settings = Arc::new(StreamSettings {
            backfill_page_size: config.backfill_page_size,
            max_groups: config.max_groups_per_stream,
            reconnect_after_ms: config.reconnect_after_ms,
            queue_capacity: config.stream_queue_capacity,
            max_streams_per_user: config.max_streams_per_user,
            catch_up_rounds: std::num::NonZeroU32::new(config.stream_catch_ups_per_minute).map(|rate| {
                governor::Quota::per_minute(rate)
                    .allow_burst(std::num::NonZeroU32::new(config.stream_catch_up_burst.max(1)).unwrap_or(rate))
            }),
            // Looked up once here, not at every frame.
            deliveries: metrics::counter!(DELIVERIES_TOTAL),
        });
        Ok(Arc::new(Self { hub, upstream, settings, open_limit, shutdown }))
    }

    /// Opens `user`'s stream, resuming each group in `resume` after its position.
    pub(crate) async fn open(&self, user: UserId, resume: Resume) -> FanoutResult<LiveStream> {
        if self.shutdown.is_cancelled() {
            return Err(FanoutError::ShuttingDown);
        }
        if let Some(limit) = &self.open_limit
            && let Err(retry_after) = limit.check(user).await
        {
            return Err(FanoutError::RateLimited { user, action: LimitedAction::Subscribes, retry_after });
        }
        LiveStream::open(user, resume, Arc::clone(&self.hub), self.upstream.clone(), Arc::clone(&self.settings)).await
    }

    /// The most groups a stream carries (and so the most positions a request may name).
    pub fn max_groups(&self) -> usize {
        self.settings.max_groups
    }

    /// Whether the pod is connected to the update bus (streams can open).
    pub fn is_connected(&self) -> bool {
        self.hub.is_connected()
    }

    /// `user`'s streams on this pod: when each opened and what it delivered.
    pub fn streams_of(&self, user: UserId) -> Vec<fanfare_proto::fanout::v1::StreamInfo> {
        self.hub
            .streams_of(user)
            .iter()
            .map(|info| {
                let positions = info.positions();
                fanfare_proto::fanout::v1::StreamInfo {
                    opened_at: Some(fanfare_core::time::to_timestamp(info.opened_at)),
                    positions: positions.iter().map(|(group, position)| position.to_proto(*group)).collect(),
                }
            })
            .collect()
    }

    /// The name this pod answers `ListStreams` with: its host name (the pod name on
    /// Kubernetes).
    pub fn pod_name(&self) -> String {
        std::env::var("HOSTNAME").ok().filter(|name| !name.is_empty()).unwrap_or_else(|| "unknown".to_owned())
    }

    /// How many streams are open on this pod.
    pub fn open_streams(&self) -> usize {
        self.hub.open_streams()
    }

    /// How many group and user channels this pod listens to for its streams.
    pub fn channels(&self) -> usize {
        self.hub.topics()
    }
}
