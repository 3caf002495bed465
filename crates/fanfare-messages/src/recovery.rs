//! Outbox recovery: republishes what a pod committed but never published (it crashed, or
//! was cut off from the bus), lane by lane, on any pod.
//!
//! The outbox is split into [`crate::domain::OUTBOX_LANES`] lanes by group. Every pod looks
//! once a second for lanes holding updates older than the recovery grace — far older than
//! a live committer takes to publish and acknowledge its own — takes the lease of each such
//! lane it can get, publishes the lane's old updates in (group, event_seq) order, deletes
//! them, and gives the lease back. No single loop or lock stands between all commits and
//! the bus: lanes are drained in parallel, by as many pods as there are, each group's in
//! order.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use fanfare_bus::UpdateBus;
use futures::StreamExt as _;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::publisher::drain;
use crate::store::MessageStore;

/// How long a lane's lease lasts: long enough for one drain of a big backlog; a pod that
/// dies while holding one delays that lane by at most this.
const LANE_LEASE: Duration = Duration::from_secs(30);
/// How often a pod looks for orphaned lanes.
const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// Lanes one pod drains at once.
const LANES_AT_ONCE: usize = 4;

/// What one recovery pass did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecoveryOutcome {
    /// No lane held updates older than the grace (or the store could not be read).
    Idle,
    /// This many updates were republished (other pods may hold the remaining lanes).
    Republished(usize),
    /// Some lane could not be drained (the bus or the store failed); retried next pass.
    Failed,
}

/// Republishes orphaned outbox updates.
pub struct Recovery {
    store: Arc<dyn MessageStore>,
    bus: Arc<dyn UpdateBus>,
    /// This pod's name on the lane leases.
    owner: Uuid,
    /// How old an unpublished update must be before it counts as orphaned.
    grace: Duration,
}

impl Recovery {
    /// Recovery from `store`'s outbox to `bus`, for updates older than `grace`.
    pub fn new(store: Arc<dyn MessageStore>, bus: Arc<dyn UpdateBus>, grace: Duration) -> Self {
        Self { store, bus, owner: Uuid::new_v4(), grace }
    }

    /// One pass: every orphaned lane this pod can lease, a few at a time.
    pub async fn run_once(&self) -> RecoveryOutcome {
        let now = Utc::now();
        let Some(cutoff) = chrono::TimeDelta::from_std(self.grace).ok().and_then(|grace| now.checked_sub_signed(grace))
        else {
            return RecoveryOutcome::Idle;
        };
        let mut lanes = match self.store.orphaned_lanes(cutoff).await {
            Ok(lanes) => lanes,
            Err(error) => {
                tracing::warn!(error = ?error, "looking for orphaned outbox lanes failed");
                return RecoveryOutcome::Idle;
            }
        };
        metrics::gauge!(crate::metrics::OUTBOX_ORPHANED_LANES).set(lanes.len() as f64);
        if lanes.is_empty() {
            return RecoveryOutcome::Idle;
        }
        // Pods start at different lanes, so several share a big backlog instead of queueing
        // for the same leases.
        let offset = usize::try_from(self.owner.as_u128() % 64).unwrap_or_default() % lanes.len();
        lanes.rotate_left(offset);
        let outcomes: Vec<Result<usize, ()>> = futures::stream::iter(lanes)
            .map(|lane| self.recover_lane(lane, cutoff))
            .buffer_unordered(LANES_AT_ONCE)
            .collect()
            .await;
        let republished: usize = outcomes.iter().filter_map(|outcome| outcome.as_ref().ok()).sum();
        if outcomes.iter().any(Result::is_err) {
            RecoveryOutcome::Failed
        } else {
            RecoveryOutcome::Republished(republished)
        }
    }

    /// Drains one lane under its lease; `Ok(0)` when another pod holds it.
    async fn recover_lane(&self, lane: i16, cutoff: chrono::DateTime<Utc>) -> Result<usize, ()> {
        match self.store.claim_lane(lane, self.owner, LANE_LEASE, Utc::now()).await {
            Ok(true) => {}
            Ok(false) => return Ok(0),
            Err(error) => {
                tracing::warn!(error = ?error, lane, "claiming an outbox lane failed");
                return Err(());
            }
        }
        let outcome = drain(self.store.as_ref(), self.bus.as_ref(), &[lane], cutoff).await;
        if let Err(error) = self.store.release_lane(lane, self.owner).await {
            // The lease runs out by itself.
            tracing::warn!(error = ?error, lane, "releasing an outbox lane failed");
        }
        if let Ok(republished) = outcome
            && republished > 0
        {
            metrics::counter!(crate::metrics::RECOVERED_TOTAL).increment(republished as u64);
            tracing::info!(lane, republished, "republished updates committed but never published");
        }
        outcome
    }

    /// Runs a pass every second until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(POLL_INTERVAL) => {}
            }
            // A stopped pod stops recovering at once (a pass may wait long on an
            // unreachable bus); its leases run out and other pods take the lanes over.
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = self.run_once() => {}
            }
        }
    }
}
