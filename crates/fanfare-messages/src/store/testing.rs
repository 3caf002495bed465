//! A [`MessageStore`] that hands every call to an inner store, with a hook around
//! [`MessageStore::apply`] (the batch write): for tests that hold or fail commits, and for
//! benchmarks that count and time them, without each writing out the whole trait again.
//!
//! Test support, compiled only with the `testing` feature.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use fanfare_core::ids::{EventSeq, GroupId, MessageSeq, UserId};
use fanfare_core::paging::PageSize;
use uuid::Uuid;

use super::{Committed, Direction, LogWrite, MessageStore, OutboxCursor, StoreResult, UpdatesRead};
use crate::domain::{LogPosition, Message, StoredUpdate, Unread};

/// What a [`HookedStore`] does around a batch write.
#[async_trait]
pub trait ApplyHook: Send + Sync + 'static {
    /// Applies `writes` for the wrapping store: usually by calling `inner.apply(writes, now)`
    /// with something before or after it, but a hook may also hold the batch, or fail it
    /// without calling `inner` at all.
    async fn apply(
        &self,
        inner: &dyn MessageStore,
        writes: Vec<LogWrite>,
        now: DateTime<Utc>,
    ) -> StoreResult<Committed>;
}

/// A store that delegates to `inner`, except that batch writes go through `hook`.
pub struct HookedStore<H> {
    inner: Arc<dyn MessageStore>,
    hook: H,
}

impl<H: ApplyHook> HookedStore<H> {
    /// `inner`, with `hook` around its batch writes.
    pub fn new(inner: Arc<dyn MessageStore>, hook: H) -> Self {
        Self { inner, hook }
    }

    /// The hook, to steer it or read what it recorded.
    pub fn hook(&self) -> &H {
        &self.hook
    }

    /// The store wrapped.
    pub fn inner(&self) -> &Arc<dyn MessageStore> {
        &self.inner
    }
}

#[async_trait]
impl<H: ApplyHook> MessageStore for HookedStore<H> {
    async fn apply(&self, writes: Vec<LogWrite>, now: DateTime<Utc>) -> StoreResult<Committed> {
        self.hook.apply(self.inner.as_ref(), writes, now).await
    }

    async fn get_messages(&self, group: GroupId, message_seqs: &[MessageSeq]) -> StoreResult<Vec<Message>> {
        self.inner.get_messages(group, message_seqs).await
    }

    async fn get_messages_by_id(&self, group: GroupId, ids: &[Uuid]) -> StoreResult<Vec<Message>> {
        self.inner.get_messages_by_id(group, ids).await
    }

    async fn list_messages(
        &self,
        group: GroupId,
        direction: Direction,
        anchor: Option<MessageSeq>,
        not_before: Option<DateTime<Utc>>,
        limit: PageSize,
    ) -> StoreResult<Vec<Message>> {
        self.inner.list_messages(group, direction, anchor, not_before, limit).await
    }

    async fn get_updates(&self, group: GroupId, after: EventSeq, limit: PageSize) -> StoreResult<UpdatesRead> {
        self.inner.get_updates(group, after, limit).await
    }

    async fn log_positions(&self, groups: &[GroupId]) -> StoreResult<Vec<LogPosition>> {
        self.inner.log_positions(groups).await
    }

    async fn mark_read(&self, group: GroupId, user: UserId, message_seq: MessageSeq) -> StoreResult<MessageSeq> {
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

    async fn ack_outbox(&self, published: &[(GroupId, EventSeq)]) -> StoreResult<()> {
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::store::MemoryMessageStore;
    use crate::store::conformance::{at, group, post, text, user};

    /// Counts the writes it lets through.
    #[derive(Default)]
    struct CountWrites(AtomicUsize);

    #[async_trait]
    impl ApplyHook for CountWrites {
        async fn apply(
            &self,
            inner: &dyn MessageStore,
            writes: Vec<LogWrite>,
            now: DateTime<Utc>,
        ) -> StoreResult<Committed> {
            self.0.fetch_add(writes.len(), Ordering::SeqCst);
            inner.apply(writes, now).await
        }
    }

    #[tokio::test]
    async fn batch_writes_pass_the_hook_and_reads_go_straight_through() {
        let store = HookedStore::new(Arc::new(MemoryMessageStore::new()), CountWrites::default());
        let writes = vec![post(group(1), user(1), "a", text("a")), post(group(1), user(1), "b", text("b"))];
        let committed = store.apply(writes, at(0)).await.expect("applied");
        assert_eq!(committed.outcomes.len(), 2);
        assert_eq!(store.hook().0.load(Ordering::SeqCst), 2);
        let position = store.log_positions(&[group(1)]).await.expect("read");
        assert_eq!(position[0].last_message_seq, MessageSeq::from_trusted(2), "read from the inner store");
    }
}
