//! Publishing after commit when the bus misbehaves: a lane whose bus is slow enough to fill
//! its queue, or that refuses publishes, spills to the outbox and catches up from there,
//! losing nothing and keeping each group's first deliveries in event_seq order; the outbox
//! empties once everything went out.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::Utc;
use fanfare_bus::{BusError, BusEvent, MemoryBus, Subscriber, UpdateBus, group_channel, group_id_from_channel};
use fanfare_messages::domain::OUTBOX_LANES;
use fanfare_messages::publisher::Publisher;
use fanfare_messages::store::conformance::{group, post, text, user};
use fanfare_messages::store::{MemoryMessageStore, MessageStore};
use fanfare_proto::common::v1 as common;
use fanfare_proto::prost::Message as _;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

const GROUPS: i64 = 3;
const PATIENCE: Duration = Duration::from_secs(20);

/// An in-process bus that can be held (publishes wait: a slow bus) or made to refuse
/// publishes (a bus that is down).
struct TroubledBus {
    inner: MemoryBus,
    open: watch::Sender<bool>,
    refusing: AtomicBool,
}

impl TroubledBus {
    fn new() -> Arc<Self> {
        Arc::new(Self { inner: MemoryBus::new(), open: watch::channel(true).0, refusing: AtomicBool::new(false) })
    }
}

#[async_trait]
impl UpdateBus for TroubledBus {
    async fn publish(&self, channel: &str, payload: Bytes) -> Result<(), BusError> {
        self.publish_all(&[(channel.to_owned(), payload)]).await
    }

    async fn publish_all(&self, messages: &[(String, Bytes)]) -> Result<(), BusError> {
        let mut open = self.open.subscribe();
        open.wait_for(|open| *open).await.map_err(|_| BusError::Closed)?;
        if self.refusing.load(Ordering::SeqCst) {
            return Err(BusError::Closed);
        }
        self.inner.publish_all(messages).await
    }

    async fn subscriber(&self) -> Result<Subscriber, BusError> {
        self.inner.subscriber().await
    }

    async fn ping(&self) -> Result<(), BusError> {
        self.inner.ping().await
    }
}

async fn listen(bus: &TroubledBus) -> Subscriber {
    let subscriber = bus.subscriber().await.expect("a subscriber");
    for id in 1..=GROUPS {
        subscriber.subscribe(&group_channel(id)).await.expect("subscribed");
    }
    subscriber
}

/// Commits `count` posts spread over the groups, one batch each, handing each batch to the
/// publisher as the committer does; returns each group's last event_seq.
async fn commit(store: &dyn MessageStore, publisher: &Publisher, first: usize, count: usize) -> BTreeMap<i64, i64> {
    let mut last = BTreeMap::new();
    for index in first..first + count {
        let group_id = (index as i64) % GROUPS + 1;
        let write = post(group(group_id), user(1), &format!("k-{index}"), text("hello"));
        let committed = store.apply(vec![write], Utc::now()).await.expect("committed");
        for update in &committed.appended {
            last.insert(update.group_id.get(), update.event_seq.get());
        }
        publisher.committed(publisher.lane_of(group(group_id)), committed.appended);
    }
    last
}

/// Receives until every group's `last` arrived; returns each group's event_seqs in the
/// order they first arrived (repeats dropped, as a subscriber drops them).
async fn first_arrivals(subscriber: &mut Subscriber, last: &BTreeMap<i64, i64>) -> BTreeMap<i64, Vec<i64>> {
    let mut firsts: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    let done = |firsts: &BTreeMap<i64, Vec<i64>>| {
        last.iter().all(|(group_id, seq)| firsts.get(group_id).is_some_and(|seqs| seqs.contains(seq)))
    };
    while !done(&firsts) {
        let event = tokio::time::timeout(PATIENCE, subscriber.recv())
            .await
            .unwrap_or_else(|_| panic!("not everything arrived: {firsts:?}"))
            .expect("the subscriber lives");
        let BusEvent::Message { channel, payload } = event else { continue };
        let update = common::Update::decode(payload.as_ref()).expect("an encoded update");
        let seqs = firsts.entry(group_id_from_channel(&channel).expect("a group channel")).or_default();
        if !seqs.contains(&update.event_seq) {
            seqs.push(update.event_seq);
        }
    }
    firsts
}

#[track_caller]
fn assert_complete_in_order(firsts: &BTreeMap<i64, Vec<i64>>, last: &BTreeMap<i64, i64>) {
    for (group_id, last_seq) in last {
        assert_eq!(firsts[group_id], (1..=*last_seq).collect::<Vec<_>>(), "group {group_id}: all, in order");
    }
}

async fn wait_for_empty_outbox(store: &dyn MessageStore) {
    let lanes: Vec<i16> = (0..OUTBOX_LANES).collect();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let left = store.unpublished(&lanes, Utc::now() + chrono::Duration::seconds(1), None, 10).await.expect("read");
        if left.is_empty() {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "the outbox kept {left:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lane_whose_slow_bus_fills_its_queue_catches_up_from_the_outbox() {
    let store: Arc<dyn MessageStore> = Arc::new(MemoryMessageStore::new());
    let bus = TroubledBus::new();
    let mut subscriber = listen(&bus).await;
    let shutdown = CancellationToken::new();
    let publisher = Publisher::start(Arc::clone(&store), Arc::clone(&bus) as Arc<dyn UpdateBus>, 1, shutdown.clone());

    // The bus holds every publish: the lane's queue (1,024 batches) fills, and the batches
    // after it are left to the outbox.
    bus.open.send_replace(false);
    let last = commit(store.as_ref(), &publisher, 0, 1_500).await;
    bus.open.send_replace(true);

    let firsts = first_arrivals(&mut subscriber, &last).await;
    assert_complete_in_order(&firsts, &last);
    wait_for_empty_outbox(store.as_ref()).await;

    // Caught up, the lane takes batches again.
    let more = commit(store.as_ref(), &publisher, 1_500, 30).await;
    let firsts = first_arrivals(&mut subscriber, &more).await;
    for (group_id, seq) in &more {
        assert!(firsts[group_id].contains(seq), "group {group_id} got {seq} after the catch-up");
    }
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lane_whose_bus_refuses_keeps_committed_updates_and_publishes_them_in_order_later() {
    let store: Arc<dyn MessageStore> = Arc::new(MemoryMessageStore::new());
    let bus = TroubledBus::new();
    let mut subscriber = listen(&bus).await;
    let shutdown = CancellationToken::new();
    let publisher = Publisher::start(Arc::clone(&store), Arc::clone(&bus) as Arc<dyn UpdateBus>, 1, shutdown.clone());

    bus.refusing.store(true, Ordering::SeqCst);
    let mut last = commit(store.as_ref(), &publisher, 0, 60).await;
    // A few of the lane's retries fail while the bus is down.
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    assert!(
        !store.unpublished(&[1, 2, 3], Utc::now(), None, 10).await.expect("read").is_empty(),
        "the updates wait in the outbox"
    );
    bus.refusing.store(false, Ordering::SeqCst);
    last.extend(commit(store.as_ref(), &publisher, 60, 30).await);

    let firsts = first_arrivals(&mut subscriber, &last).await;
    assert_complete_in_order(&firsts, &last);
    wait_for_empty_outbox(store.as_ref()).await;
    shutdown.cancel();
}
