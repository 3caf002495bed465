//! A [`MessageStore`] that counts what the committer hands the store: batches, the writes
//! in them, and the time spent applying them. Wrapped around the Postgres store the service
//! runs on, it shows the commit batches a window produced without reading metrics.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use fanfare_core::ids::{GroupId, UserId};
use fanfare_core::paging::PageSize;
use fanfare_messages::domain::{LogPosition, Message, StoredUpdate, Unread};
use fanfare_messages::store::{
    Committed, Direction, LogWrite, MessageStore, OutboxCursor, PostgresMessageStore, StoreResult, UpdatesRead,
};
use uuid::Uuid;

/// The Postgres store, counting its batches.
pub struct CountingStore {
    inner: PostgresMessageStore,
    batches: AtomicU64,
    writes: AtomicU64,
    busy_nanos: AtomicU64,
    /// Every batch's size since the last [`CountingStore::mark`].
    sizes: Mutex<Vec<u32>>,
}

/// Counters at one instant.
#[derive(Debug, Clone, Copy)]
pub struct Mark {
    batches: u64,
    writes: u64,
    busy_nanos: u64,
}

/// What the store applied between a [`Mark`] and [`CountingStore::since`].
#[derive(Debug, Clone)]
pub struct Batches {
    /// `apply` calls: transactions committed (or failed).
    pub batches: u64,
    /// Writes in them.
    pub writes: u64,
    /// Summed time inside `apply`, over all committer workers.
    pub busy: Duration,
    /// Median batch size.
    pub median: u32,
    /// Largest batch.
    pub max: u32,
}

impl Batches {
    /// Writes per batch.
    pub fn mean(&self) -> f64 {
        self.writes as f64 / self.batches.max(1) as f64
    }

    /// Mean time inside one `apply`.
    pub fn mean_apply(&self) -> Duration {
        self.busy / u32::try_from(self.batches.max(1)).unwrap_or(u32::MAX)
    }
}

impl CountingStore {
    /// Counts `inner`'s batches.
    pub fn new(inner: PostgresMessageStore) -> Self {
        Self {
            inner,
            batches: AtomicU64::new(0),
            writes: AtomicU64::new(0),
            busy_nanos: AtomicU64::new(0),
            sizes: Mutex::new(Vec::new()),
        }
    }

    /// The store counted.
    pub fn inner(&self) -> &PostgresMessageStore {
        &self.inner
    }

    /// Starts a count: the counters now, and the batch sizes forgotten.
    pub fn mark(&self) -> Mark {
        self.sizes.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clear();
        Mark {
            batches: self.batches.load(Ordering::Relaxed),
            writes: self.writes.load(Ordering::Relaxed),
            busy_nanos: self.busy_nanos.load(Ordering::Relaxed),
        }
    }

    /// What was applied since `mark`.
    pub fn since(&self, mark: Mark) -> Batches {
        let mut sizes = std::mem::take(&mut *self.sizes.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        sizes.sort_unstable();
        Batches {
            batches: self.batches.load(Ordering::Relaxed) - mark.batches,
            writes: self.writes.load(Ordering::Relaxed) - mark.writes,
            busy: Duration::from_nanos(self.busy_nanos.load(Ordering::Relaxed) - mark.busy_nanos),
            median: sizes.get(sizes.len() / 2).copied().unwrap_or(0),
            max: sizes.last().copied().unwrap_or(0),
        }
    }
}

#[async_trait]
impl MessageStore for CountingStore {
    async fn apply(&self, writes: Vec<LogWrite>, now: DateTime<Utc>) -> StoreResult<Committed> {
        let size = writes.len();
        let started = Instant::now();
        let outcome = self.inner.apply(writes, now).await;
        let nanos = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.busy_nanos.fetch_add(nanos, Ordering::Relaxed);
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.writes.fetch_add(size as u64, Ordering::Relaxed);
        self.sizes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(u32::try_from(size).unwrap_or(u32::MAX));
        outcome
    }

    async fn get_messages(&self, group: GroupId, message_seqs: &[i64]) -> StoreResult<Vec<Message>> {
        self.inner.get_messages(group, message_seqs).await
    }

    async fn get_messages_by_id(&self, group: GroupId, ids: &[Uuid]) -> StoreResult<Vec<Message>> {
        self.inner.get_messages_by_id(group, ids).await
    }

    async fn list_messages(
        &self,
        group: GroupId,
        direction: Direction,
        anchor: Option<i64>,
        not_before: Option<DateTime<Utc>>,
        limit: PageSize,
    ) -> StoreResult<Vec<Message>> {
        self.inner.list_messages(group, direction, anchor, not_before, limit).await
    }

    async fn get_updates(&self, group: GroupId, after: i64, limit: PageSize) -> StoreResult<UpdatesRead> {
        self.inner.get_updates(group, after, limit).await
    }

    async fn log_positions(&self, groups: &[GroupId]) -> StoreResult<Vec<LogPosition>> {
        self.inner.log_positions(groups).await
    }

    async fn mark_read(&self, group: GroupId, user: UserId, message_seq: i64) -> StoreResult<i64> {
        self.inner.mark_read(group, user, message_seq).await
    }

    async fn unread_counts(&self, user: UserId, groups: &[GroupId]) -> StoreResult<Vec<Unread>> {
        self.inner.unread_counts(user, groups).await
    }

    async fn unpublished(
        &self,
        lanes: &[i16],
        committed_before: DateTime<Utc>,
        after: OutboxCursor,
        limit: u32,
    ) -> StoreResult<Vec<StoredUpdate>> {
        self.inner.unpublished(lanes, committed_before, after, limit).await
    }

    async fn ack_outbox(&self, published: &[(GroupId, i64)]) -> StoreResult<()> {
        self.inner.ack_outbox(published).await
    }

    async fn orphaned_lanes(&self, committed_before: DateTime<Utc>) -> StoreResult<Vec<i16>> {
        self.inner.orphaned_lanes(committed_before).await
    }

    async fn claim_lane(&self, lane: i16, owner: Uuid, lease: Duration, now: DateTime<Utc>) -> StoreResult<bool> {
        self.inner.claim_lane(lane, owner, lease, now).await
    }

    async fn release_lane(&self, lane: i16, owner: Uuid) -> StoreResult<()> {
        self.inner.release_lane(lane, owner).await
    }

    async fn prune_updates(&self, before: DateTime<Utc>) -> StoreResult<u64> {
        self.inner.prune_updates(before).await
    }

    async fn ping(&self) -> StoreResult<()> {
        self.inner.ping().await
    }
}
