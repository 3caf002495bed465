//! The outbox and pruning: what a batch leaves to publish, lanes and their leases, acks,
//! and pruning that keeps what still waits; an empty batch; `ping`.

use std::time::Duration;

use fanfare_core::ids::{EventSeq, GroupId};
use fanfare_core::paging::PageSize;
use uuid::Uuid;

use super::helpers::{at, edit, event_seq, group, log_of, message_seq, position, post, send, text, user};
use crate::domain::StoredUpdate;
use crate::store::{Committed, MessageStore};

async fn fill_outbox(store: &dyn MessageStore) {
    for index in 0..5 {
        let writes = vec![
            post(group(2), user(1), &format!("b{index}"), text("b")),
            post(group(1), user(1), &format!("a{index}"), text("a")),
            post(group(65), user(1), &format!("c{index}"), text("c")),
        ];
        store.apply(writes, at(index)).await.unwrap();
    }
}

fn keys(updates: &[StoredUpdate]) -> Vec<(i64, i64)> {
    updates.iter().map(|update| (update.group_id.get(), update.event_seq.get())).collect()
}

fn every_lane() -> Vec<i16> {
    (0..crate::domain::OUTBOX_LANES).collect()
}

/// Everything unpublished, whenever committed.
async fn outbox_of(store: &dyn MessageStore) -> Vec<StoredUpdate> {
    store.unpublished(&every_lane(), at(1_000_000), None, 10_000).await.unwrap()
}

/// A batch answers the log entries it appended, in commit order, and each waits in the
/// outbox, in its group's lane, until acknowledged.
pub async fn a_batch_returns_what_it_appended_and_leaves_it_unpublished(store: &dyn MessageStore) {
    let writes = vec![
        post(group(2), user(1), "a", text("a")),
        post(group(1), user(1), "b", text("b")),
        post(group(2), user(1), "c", text("c")),
        post(group(2), user(1), "a", text("a")),
    ];
    let committed = store.apply(writes, at(0)).await.unwrap();
    assert_eq!(keys(&committed.appended), [(2, 1), (1, 1), (2, 2)], "commit order; a retry appends nothing");
    let mut logged = store.get_updates(group(2), EventSeq::ZERO, PageSize::new(10)).await.unwrap().updates;
    logged.extend(store.get_updates(group(1), EventSeq::ZERO, PageSize::new(10)).await.unwrap().updates);
    for update in &committed.appended {
        assert!(logged.contains(update), "{update:?} is the logged entry");
    }
    assert_eq!(keys(&outbox_of(store).await), [(1, 1), (2, 1), (2, 2)], "(lane, group, event_seq) order");
    let lane_of_two = crate::domain::outbox_lane(group(2));
    let only_two = store.unpublished(&[lane_of_two], at(1), None, 10).await.unwrap();
    assert_eq!(keys(&only_two), [(2, 1), (2, 2)], "one lane holds its groups only");
    let refused = store.apply(vec![edit(group(1), 9, user(1), "x")], at(1)).await.unwrap();
    assert!(refused.appended.is_empty(), "a refused write appends nothing");
}

/// Unpublished updates are read lane by lane in (group, event_seq) order from a cursor,
/// only those committed before the cutoff; acknowledged ones are gone.
pub async fn unpublished_updates_page_in_order_and_acks_remove_them(store: &dyn MessageStore) {
    fill_outbox(store).await;
    let lanes = every_lane();
    let mut pages = Vec::new();
    let mut after = None;
    loop {
        let page = store.unpublished(&lanes, at(100), after, 4).await.unwrap();
        let Some(last) = page.last() else { break };
        after = Some(last.key());
        pages.push(keys(&page));
    }
    assert!(pages.iter().all(|page| page.len() <= 4));
    let everything: Vec<(i64, i64)> = pages.concat();
    // Groups 1 and 65 share lane 1; group 2 is in lane 2.
    let expected: Vec<(i64, i64)> =
        [1, 65, 2].into_iter().flat_map(|group_id| (1..=5).map(move |seq| (group_id, seq))).collect();
    assert_eq!(everything, expected);

    let before_two = store.unpublished(&lanes, at(2), None, 100).await.unwrap();
    assert_eq!(before_two.len(), 6, "only what committed before the cutoff: {:?}", keys(&before_two));
    let logged = store.get_updates(group(65), EventSeq::ZERO, PageSize::new(10)).await.unwrap().updates;
    let read = store.unpublished(&[1], at(100), Some((group(1), event_seq(5))), 100).await.unwrap();
    assert_eq!(read, logged, "a cursor resumes after its key, with the logged payloads");

    let acked: Vec<(GroupId, EventSeq)> =
        [(1, 1), (1, 2), (2, 5), (7, 1)].into_iter().map(|(group_id, seq)| (group(group_id), event_seq(seq))).collect();
    store.ack_outbox(&acked).await.unwrap();
    store.ack_outbox(&[]).await.unwrap();
    let left = keys(&outbox_of(store).await);
    assert_eq!(left.len(), 12, "three acknowledged, the unknown one ignored");
    assert!(!left.contains(&(1, 1)) && !left.contains(&(1, 2)) && !left.contains(&(2, 5)));
    assert_eq!(left.first(), Some(&(1, 3)), "the group's next waits first");
}

/// Lanes holding updates older than the cutoff are orphaned; a lane's lease is held by
/// one owner until released or expired.
pub async fn orphaned_lanes_and_their_leases(store: &dyn MessageStore) {
    assert!(store.orphaned_lanes(at(1_000)).await.unwrap().is_empty());
    send(store, group(3), user(1), "a", at(0)).await;
    send(store, group(5), user(1), "b", at(10)).await;
    assert_eq!(store.orphaned_lanes(at(5)).await.unwrap(), [3]);
    assert_eq!(store.orphaned_lanes(at(11)).await.unwrap(), [3, 5]);

    let (first, second) = (Uuid::from_u128(1), Uuid::from_u128(2));
    let lease = Duration::from_secs(30);
    assert!(store.claim_lane(3, first, lease, at(0)).await.unwrap());
    assert!(!store.claim_lane(3, second, lease, at(10)).await.unwrap(), "held by the first");
    assert!(store.claim_lane(3, first, lease, at(10)).await.unwrap(), "renewed by its owner");
    assert!(store.claim_lane(5, second, lease, at(10)).await.unwrap(), "lanes are leased apart");
    store.release_lane(3, second).await.unwrap();
    assert!(!store.claim_lane(3, second, lease, at(20)).await.unwrap(), "only the owner releases");
    assert!(store.claim_lane(3, second, lease, at(41)).await.unwrap(), "an expired lease is taken over");
    store.release_lane(3, second).await.unwrap();
    assert!(store.claim_lane(3, first, lease, at(42)).await.unwrap(), "a released lane is free");
}

async fn drain_outbox(store: &dyn MessageStore) {
    let waiting: Vec<(GroupId, EventSeq)> = outbox_of(store).await.iter().map(StoredUpdate::key).collect();
    store.ack_outbox(&waiting).await.unwrap();
}

/// Pruning drops published entries older than the cutoff and raises each group's oldest
/// retained event_seq; the position itself stays.
pub async fn prune_drops_old_updates_and_raises_the_oldest_retained(store: &dyn MessageStore) {
    let (busy, quiet, fresh) = (group(1), group(2), group(3));
    store.apply(vec![post(busy, user(1), "a", text("a")), post(busy, user(1), "b", text("b"))], at(0)).await.unwrap();
    store.apply(vec![post(busy, user(1), "c", text("c")), post(busy, user(1), "d", text("d"))], at(100)).await.unwrap();
    send(store, busy, user(1), "e", at(200)).await;
    send(store, quiet, user(1), "f", at(0)).await;
    send(store, fresh, user(1), "g", at(300)).await;
    drain_outbox(store).await;

    assert_eq!(store.prune_updates(at(150)).await.unwrap(), 5);
    let positions = store.log_positions(&[busy, quiet, fresh]).await.unwrap();
    let summary: Vec<(i64, i64, i64)> = positions
        .iter()
        .map(|p| (p.oldest_retained_event_seq.get(), p.last_event_seq.get(), p.last_message_seq.get()))
        .collect();
    assert_eq!(summary, [(5, 5, 5), (2, 1, 1), (1, 1, 1)]);
    let left = store.get_updates(busy, EventSeq::ZERO, PageSize::new(10)).await.unwrap();
    assert_eq!(left.updates.iter().map(|update| update.event_seq.get()).collect::<Vec<_>>(), [5]);
    assert!(store.get_updates(quiet, EventSeq::ZERO, PageSize::new(10)).await.unwrap().updates.is_empty());
    assert_eq!(store.prune_updates(at(150)).await.unwrap(), 0, "nothing more to drop");
    assert_eq!(log_of(store, busy).await.len(), 1);

    // The log goes on from where it was.
    let next = send(store, quiet, user(1), "h", at(400)).await;
    assert_eq!((next.message_seq, next.event_seq), (message_seq(2), event_seq(2)));
    assert_eq!(store.get_messages(busy, &[message_seq(1)]).await.unwrap().len(), 1, "messages are kept");
}

/// Entries still waiting in the outbox (and any after them) survive pruning.
pub async fn prune_keeps_updates_still_waiting_in_the_outbox(store: &dyn MessageStore) {
    let chat = group(1);
    for index in 0..3 {
        send(store, chat, user(1), &format!("m{index}"), at(index)).await;
    }
    store.ack_outbox(&[(chat, event_seq(1))]).await.unwrap();
    assert_eq!(store.prune_updates(at(1_000)).await.unwrap(), 1);
    assert_eq!(position(store, chat).await.oldest_retained_event_seq, event_seq(2));
    assert_eq!(keys(&outbox_of(store).await), [(1, 2), (1, 3)], "still publishable");
}

/// An empty batch answers nothing and writes nothing.
pub async fn an_empty_batch_writes_nothing(store: &dyn MessageStore) {
    assert_eq!(store.apply(Vec::new(), at(0)).await.unwrap(), Committed::default());
    assert!(outbox_of(store).await.is_empty());
    assert_eq!(store.prune_updates(at(1)).await.unwrap(), 0);
}

/// A reachable store answers a ping.
pub async fn ping_succeeds(store: &dyn MessageStore) {
    store.ping().await.expect("ping");
}
