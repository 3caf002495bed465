//! The outbox: read back in order, and the relay's queue of claims, leases and publishing.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use fanfare_proto::common::v1::group_event::Change;
use futures::future::join_all;

use super::helpers::{add, all_events, at, changes, create, names, user};
use crate::domain::{Group, GroupKind, OutboxEntry};
use crate::store::{Departure, GroupStore};

/// The outbox reads in increasing id order, page by page, each group's changes in order.
pub async fn outbox_is_read_in_id_order(store: &dyn GroupStore) {
    let owner = user(1);
    let first = create(store, GroupKind::Chat, owner).await;
    let second = create(store, GroupKind::Community, owner).await;
    add(store, &first, &[2, 3], at(1)).await;
    add(store, &second, &[2], at(1)).await;
    store.remove_member(first.id, user(2), Departure::Left, user(2), at(2)).await.unwrap();
    store.archive_group(second.id, owner, at(3)).await.unwrap();

    let mut ids = Vec::new();
    let mut after_id = 0;
    loop {
        let page = store.read_outbox(after_id, 2).await.unwrap();
        assert!(page.len() <= 2);
        let Some(last) = page.last() else { break };
        after_id = last.id;
        ids.extend(page.iter().map(|entry| entry.id));
    }
    assert!(ids.windows(2).all(|pair| pair[0] < pair[1]), "ids increase: {ids:?}");
    assert_eq!(ids.len(), 9);
    assert!(store.read_outbox(after_id, 10).await.unwrap().is_empty());
    assert_eq!(names(&changes(store, first.id).await), ["created", "joined", "joined", "joined", "left"]);
    assert_eq!(names(&changes(store, second.id).await), ["created", "joined", "joined", "archived"]);
    let events = all_events(store).await;
    let left = events.iter().find(|event| matches!(event.change, Some(Change::MemberLeft(_))));
    let occurred = left.and_then(|event| event.occurred_at.as_ref()).map(|time| time.seconds);
    assert_eq!(occurred, Some(at(2).timestamp()));
}

/// The lease of the claims in these tests.
const LEASE: Duration = Duration::from_secs(10);

fn ids(entries: &[OutboxEntry]) -> Vec<i64> {
    entries.iter().map(|entry| entry.id).collect()
}

/// Every outbox entry, published or not, in id order.
async fn whole_outbox(store: &dyn GroupStore) -> Vec<OutboxEntry> {
    store.read_outbox(0, 10_000).await.expect("read the outbox")
}

/// `count` CHAT groups owned by user 1, created at `at(0)`: two outbox rows each.
async fn create_groups(store: &dyn GroupStore, count: usize) -> Vec<Group> {
    let mut groups = Vec::with_capacity(count);
    for _ in 0..count {
        groups.push(create(store, GroupKind::Chat, user(1)).await);
    }
    groups
}

/// Claims hand out unpublished rows oldest first, at most `limit`, as stored.
pub async fn claims_take_the_oldest_rows_first(store: &dyn GroupStore) {
    create_groups(store, 4).await;
    let all = whole_outbox(store).await;
    assert_eq!(all.len(), 8);

    let first = store.claim_outbox(4, LEASE, at(10)).await.unwrap();
    assert_eq!(first, all[..4], "the two oldest groups' rows, as stored");
    let second = store.claim_outbox(3, LEASE, at(10)).await.unwrap();
    assert_eq!(second, all[4..7]);
    // The last row waits behind its group's claimed row (see a_group_waits_behind_its_claimed_rows).
    assert!(store.claim_outbox(10, LEASE, at(10)).await.unwrap().is_empty());
}

/// Claimers running at once never receive the same row, nor rows of the same group, and no
/// row is lost. Three times over, each after every lease has expired, for more chances to race.
pub async fn concurrent_claims_never_share_a_row(store: &dyn GroupStore) {
    create_groups(store, 30).await;
    let all = ids(&whole_outbox(store).await);
    assert_eq!(all.len(), 60);

    for epoch in 0..3 {
        let now = at(100 * epoch);
        let mut seen = HashSet::new();
        // Which claim took each group's rows: two claims sharing a group could deliver its
        // rows in either order.
        let mut claim_of_group = HashMap::new();
        for round in 0.. {
            let batches = join_all((0..10).map(|_| store.claim_outbox(4, LEASE, now))).await;
            let mut claimed_now = 0;
            for (index, batch) in batches.into_iter().enumerate() {
                let batch = batch.expect("a claim");
                let batch_ids = ids(&batch);
                assert!(batch_ids.windows(2).all(|pair| pair[0] < pair[1]), "claims are in id order: {batch_ids:?}");
                for entry in batch {
                    assert!(seen.insert(entry.id), "row {} was claimed twice", entry.id);
                    let claim = *claim_of_group.entry(entry.group_id).or_insert((round, index));
                    assert_eq!(claim, (round, index), "group {} was split between claims", entry.group_id);
                    claimed_now += 1;
                }
            }
            if claimed_now == 0 {
                break;
            }
        }
        // Rows left are only those waiting behind their group's claimed first row.
        assert!(!seen.is_empty());
        for id in all.iter().filter(|id| !seen.contains(id)) {
            assert!(seen.contains(&(id - 1)), "row {id} waits behind row {} of its group", id - 1);
        }
    }
    // Once every lease has expired, everything not published is claimable again, in order.
    assert_eq!(ids(&store.claim_outbox(1_000, LEASE, at(1_000)).await.unwrap()), all);
}

/// A claim lasts exactly its lease: until then nobody else gets the rows, after it anyone can.
pub async fn an_expired_claim_is_claimed_again(store: &dyn GroupStore) {
    create_groups(store, 2).await;
    let all = ids(&whole_outbox(store).await);

    assert_eq!(ids(&store.claim_outbox(2, LEASE, at(10)).await.unwrap()), all[..2]);
    assert_eq!(ids(&store.claim_outbox(10, LEASE, at(15)).await.unwrap()), all[2..]);
    // The first claim runs until at(20) inclusive.
    assert!(store.claim_outbox(10, LEASE, at(20)).await.unwrap().is_empty());
    assert_eq!(ids(&store.claim_outbox(10, LEASE, at(21)).await.unwrap()), all[..2]);
    assert_eq!(ids(&store.claim_outbox(10, LEASE, at(26)).await.unwrap()), all[2..]);
}

/// Published rows stay readable but are never claimed again, however old their claim;
/// publishing twice or an unknown id changes nothing.
pub async fn published_rows_are_never_claimed_again(store: &dyn GroupStore) {
    assert_eq!(store.oldest_unpublished().await.unwrap(), None);
    let groups = create_groups(store, 2).await;
    add(store, &groups[0], &[2], at(5)).await;
    let all = ids(&whole_outbox(store).await);
    assert_eq!(all.len(), 5);
    assert_eq!(store.oldest_unpublished().await.unwrap(), Some(at(0)));

    assert_eq!(ids(&store.claim_outbox(10, LEASE, at(10)).await.unwrap()), all);
    let published = [all[0], all[1], all[2], all[3]];
    store.mark_published(&published, at(11)).await.unwrap();
    store.mark_published(&published, at(12)).await.unwrap();
    store.mark_published(&[all[4] + 1_000, -1], at(12)).await.unwrap();
    store.mark_published(&[], at(12)).await.unwrap();
    assert_eq!(store.oldest_unpublished().await.unwrap(), Some(at(5)), "the join of user 2");

    assert_eq!(ids(&store.claim_outbox(10, LEASE, at(100)).await.unwrap()), [all[4]]);
    store.mark_published(&[all[4]], at(101)).await.unwrap();
    assert!(store.claim_outbox(10, LEASE, at(1_000)).await.unwrap().is_empty());
    assert_eq!(store.oldest_unpublished().await.unwrap(), None);
    assert_eq!(ids(&whole_outbox(store).await), all, "published rows remain readable");

    add(store, &groups[1], &[3], at(50)).await;
    assert_eq!(store.oldest_unpublished().await.unwrap(), Some(at(50)));
    assert_eq!(store.claim_outbox(10, LEASE, at(1_000)).await.unwrap().len(), 1);
}

/// While a group's row is under a live claim, its later rows are not handed out (they
/// would overtake it); other groups' rows are.
pub async fn a_group_waits_behind_its_claimed_rows(store: &dyn GroupStore) {
    let groups = create_groups(store, 2).await;
    add(store, &groups[0], &[2], at(1)).await;
    let all = ids(&whole_outbox(store).await);
    // groups[0]: all[0], all[1], all[4]; groups[1]: all[2], all[3].

    assert_eq!(ids(&store.claim_outbox(1, LEASE, at(10)).await.unwrap()), [all[0]]);
    assert_eq!(ids(&store.claim_outbox(10, LEASE, at(10)).await.unwrap()), [all[2], all[3]]);
    assert!(store.claim_outbox(10, LEASE, at(10)).await.unwrap().is_empty());
    store.mark_published(&[all[0]], at(11)).await.unwrap();
    assert_eq!(ids(&store.claim_outbox(10, LEASE, at(11)).await.unwrap()), [all[1], all[4]]);
}

/// A claim of `limit` looks at the oldest `limit × CLAIM_WINDOW_FACTOR` claimable rows
/// only: when they all wait behind a live claim, later groups' rows wait for a larger claim
/// or for the lease to end, rather than every claim scanning the whole backlog.
pub async fn claims_look_a_bounded_way_ahead(store: &dyn GroupStore) {
    let busy = create(store, GroupKind::Broadcast, user(1)).await;
    let joiners: Vec<i64> = (10..20).collect();
    add(store, &busy, &joiners, at(1)).await;
    let quiet = create(store, GroupKind::Chat, user(2)).await;
    let all = whole_outbox(store).await;
    assert_eq!(all.len(), 14, "12 rows of the busy group, then 2 of the quiet one");
    debug_assert_eq!(crate::store::CLAIM_WINDOW_FACTOR, 4);

    assert_eq!(ids(&store.claim_outbox(1, LEASE, at(10)).await.unwrap()), [all[0].id]);
    // A window of 8 rows, all the busy group's: nothing to take.
    assert!(store.claim_outbox(2, LEASE, at(10)).await.unwrap().is_empty());
    // A window of 40 reaches the quiet group.
    let quiet_rows = store.claim_outbox(10, LEASE, at(10)).await.unwrap();
    assert!(quiet_rows.iter().all(|entry| entry.group_id == quiet.id));
    assert_eq!(ids(&quiet_rows), ids(&all[12..]));
}
