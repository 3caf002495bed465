//! Counting what the committer hands the store: batches, the writes in them, and the time
//! spent applying them. Hooked around the Postgres store the service runs on
//! ([`CountingStore`]), it shows the commit batches a window produced without reading
//! metrics.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use fanfare_messages::store::testing::{ApplyHook, HookedStore};
use fanfare_messages::store::{Committed, LogWrite, MessageStore, StoreResult};

/// A messages store, counting its batches ([`CountingStore::hook`] reads them).
pub(super) type CountingStore = HookedStore<BatchCounter>;

/// The batches applied so far.
#[derive(Default)]
pub(super) struct BatchCounter {
    batches: AtomicU64,
    writes: AtomicU64,
    busy_nanos: AtomicU64,
    /// Every batch's size since the last [`BatchCounter::mark`].
    sizes: Mutex<Vec<u32>>,
}

/// Counters at one instant.
#[derive(Debug, Clone, Copy)]
pub(super) struct Mark {
    batches: u64,
    writes: u64,
    busy_nanos: u64,
}

/// What the store applied between a [`Mark`] and [`BatchCounter::since`].
#[derive(Debug, Clone)]
pub(super) struct Batches {
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
    pub(super) fn mean(&self) -> f64 {
        self.writes as f64 / self.batches.max(1) as f64
    }

    /// Mean time inside one `apply`.
    pub(super) fn mean_apply(&self) -> Duration {
        self.busy / u32::try_from(self.batches.max(1)).unwrap_or(u32::MAX)
    }
}

impl BatchCounter {
    /// Starts a count: the counters now, and the batch sizes forgotten.
    pub(super) fn mark(&self) -> Mark {
        self.sizes.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clear();
        Mark {
            batches: self.batches.load(Ordering::Relaxed),
            writes: self.writes.load(Ordering::Relaxed),
            busy_nanos: self.busy_nanos.load(Ordering::Relaxed),
        }
    }

    /// What was applied since `mark`.
    pub(super) fn since(&self, mark: Mark) -> Batches {
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
impl ApplyHook for BatchCounter {
    async fn apply(
        &self,
        inner: &dyn MessageStore,
        writes: Vec<LogWrite>,
        now: DateTime<Utc>,
    ) -> StoreResult<Committed> {
        let size = writes.len();
        let started = Instant::now();
        let outcome = inner.apply(writes, now).await;
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
}
