//! The update log through GetUpdates (docs/messages.md "The update log"): paging by
//! event_seq, relayed membership changes, retention answered with "resync required", and
//! AppendSystemUpdates idempotent on the groups outbox id.

use fanfare_proto::common::v1 as common;
use fanfare_proto::common::v1::group_event::Change as GroupChange;
use fanfare_proto::common::v1::update::Change;
use fanfare_proto::messages::v1 as pb;
use fanfare_testkit::Storage;
use fanfare_tests::messages::{
    Client, all_updates, eventually, history, kind, log_snapshot, page, restore_log, resync, send_ok, start,
    start_with, updates_page, updates_page_after,
};
use fanfare_tests::on_every_storage;

on_every_storage!(
    the_log_pages_by_event_seq_and_holds_membership_changes,
    a_position_older_than_the_retained_log_answers_resync_required,
    system_updates_are_appended_once_per_outbox_id,
    a_page_of_big_updates_is_cut_by_size_and_pages_on,
);

/// A restore is a database operation: Postgres only.
#[tokio::test]
async fn a_position_the_log_issued_again_answers_resync_required() {
    a_position_the_log_issued_again_answers_resync_required_on(Storage::Postgres).await;
}

/// A log that went back (a point-in-time restore, an asynchronous failover) and has since
/// grown past a reader's position again holds other entries under the reader's seqs: the
/// reader's entry token tells, and the answer is resync (LOG_REISSUED), not a page of a
/// second history. Up to where both histories agree, reads go on as before.
async fn a_position_the_log_issued_again_answers_resync_required_on(storage: Storage) {
    let mut fixture = start(storage).await;
    let group_id = fixture.group(common::GroupKind::Community, 1, &[2, 3]).await;
    let database = fixture.stack.database().expect("a Postgres stack").url();
    let client = &mut fixture.messages;
    send_ok(client, 2, group_id, "kept", "before the backup").await;
    let backup = log_snapshot(&database, group_id).await;
    let shared = all_updates(client, 3, group_id).await;
    let at_backup = shared.last().expect("the log holds the group's start and a message");
    for key in ["lost-1", "lost-2"] {
        send_ok(client, 2, group_id, key, "after the backup").await;
    }
    let before = all_updates(client, 3, group_id).await;
    let held = before.last().expect("entries after the backup");
    assert!(before.windows(2).all(|pair| pair[1].previous_entry_token == pair[0].entry_token), "a linked log");

    restore_log(&database, &backup).await;
    for key in ["new-1", "new-2", "new-3"] {
        send_ok(client, 2, group_id, key, "after the restore").await;
    }
    let after = all_updates(client, 3, group_id).await;
    let latest = after.last().expect("the new history");
    assert!(latest.event_seq > held.event_seq, "the log grew past the reader's position again");
    assert_ne!(after[held.event_seq as usize - 1].entry_token, held.entry_token, "another entry at the same seq");

    let answer = resync(updates_page_after(client, 3, group_id, (held.event_seq, held.entry_token)).await);
    assert_eq!(answer.reason(), common::ResyncReason::LogReissued, "{answer:?}");
    assert_eq!((answer.latest_event_seq, answer.latest_entry_token), (latest.event_seq, latest.entry_token));
    assert!(answer.instructions.contains("issued the position again"), "{answer:?}");
    // At the end of the log too: the latest entry's token is compared.
    let at_end = (latest.event_seq, latest.entry_token ^ 1);
    assert_eq!(
        resync(updates_page_after(client, 3, group_id, at_end).await).reason(),
        common::ResyncReason::LogReissued
    );
    let at_end = page(updates_page_after(client, 3, group_id, (latest.event_seq, latest.entry_token)).await);
    assert!(at_end.updates.is_empty());
    assert_eq!(at_end.latest_entry_token, latest.entry_token);
    // Up to the backup both histories agree: a reader there reads the new entries on.
    let from_backup = page(updates_page_after(client, 3, group_id, (at_backup.event_seq, at_backup.entry_token)).await);
    let keys: Vec<String> = from_backup
        .updates
        .iter()
        .filter_map(|update| match &update.change {
            Some(Change::MessagePosted(posted)) => {
                posted.message.as_ref().map(|message| message.client_message_id.clone())
            }
            _ => None,
        })
        .collect();
    assert_eq!(keys, ["new-1", "new-2", "new-3"]);
    // Without a token nothing can be compared: the caller gets the page, as before tokens.
    let unchecked = page(updates_page_after(client, 3, group_id, (held.event_seq, 0)).await);
    assert_eq!(unchecked.latest_event_seq, latest.event_seq);
    // Past the end (the log went back and has not caught up): LOG_WENT_BACK.
    restore_log(&database, &backup).await;
    let behind = resync(updates_page_after(client, 3, group_id, (latest.event_seq, latest.entry_token)).await);
    assert_eq!(behind.reason(), common::ResyncReason::LogWentBack, "{behind:?}");
}

async fn the_log_pages_by_event_seq_and_holds_membership_changes(storage: Storage) {
    let mut fixture = start(storage).await;
    let group_id = fixture.group(common::GroupKind::Community, 1, &[2, 3]).await;
    let client = &mut fixture.messages;
    for key in ["a", "b", "c"] {
        send_ok(client, 2, group_id, key, "hi").await;
    }
    let updates = all_updates(client, 3, group_id).await;
    let kinds: Vec<&str> = updates.iter().map(kind).collect();
    assert_eq!(kinds, ["group_event", "group_event", "group_event", "group_event", "posted", "posted", "posted"]);
    let relayed: Vec<&GroupChange> = updates
        .iter()
        .filter_map(|update| match &update.change {
            Some(Change::GroupEvent(event)) => event.change.as_ref(),
            _ => None,
        })
        .collect();
    assert!(matches!(relayed[0], GroupChange::GroupCreated(_)), "{relayed:?}");
    let joined: Vec<i64> = relayed[1..]
        .iter()
        .map(|change| match change {
            GroupChange::MemberJoined(joined) => joined.user_id,
            other => panic!("a join: {other:?}"),
        })
        .collect();
    assert_eq!(joined, vec![1, 2, 3], "the owner joins as the creator, then the members added");
    assert!(updates.iter().all(|update| update.group_id == group_id && update.occurred_at.is_some()));

    let first = page(updates_page(client, 3, group_id, 0, 2).await.expect("read"));
    assert_eq!(first.updates.iter().map(|update| update.event_seq).collect::<Vec<_>>(), vec![1, 2]);
    assert!(first.has_more);
    assert_eq!(first.latest_event_seq, 7);
    let middle = page(updates_page(client, 3, group_id, 3, 2).await.expect("read"));
    assert_eq!(middle.updates, updates[3..5].to_vec(), "a page starts right after the position");
    assert!(middle.has_more);
    let last = page(updates_page(client, 3, group_id, 4, 0).await.expect("read"));
    assert_eq!(last.updates, updates[4..].to_vec(), "page_size 0 means the default");
    assert!(!last.has_more);
    let at_the_end = page(updates_page(client, 3, group_id, 7, 1_000).await.expect("read at the end"));
    assert!(at_the_end.updates.is_empty() && !at_the_end.has_more);
    assert_eq!(at_the_end.latest_event_seq, 7);
    // A position the log never reached: it went backwards (a restore), so the caller resyncs
    // rather than mixing two histories.
    for after in [8, i64::MAX] {
        match updates_page(client, 3, group_id, after, 1_000).await.expect("read past the end") {
            pb::get_updates_response::Result::ResyncRequired(resync) => assert_eq!(resync.latest_event_seq, 7),
            other => panic!("after {after}: resync required, got {other:?}"),
        }
    }
}

/// Prunes every log entry the relay is done with, until the whole log of `group_id` is gone
/// (entries still waiting to be published are kept by the store, so this may take a pass
/// or two).
async fn prune_everything(fixture: &mut fanfare_tests::messages::Fixture, group_id: i64, latest: i64) {
    let store = std::sync::Arc::clone(&fixture.stack.messages_store);
    let far_future = chrono::Utc::now() + chrono::TimeDelta::days(3_650);
    let client = fixture.messages.clone();
    eventually("the whole log is pruned", || {
        let store = std::sync::Arc::clone(&store);
        let mut client = client.clone();
        async move {
            store.prune_updates(far_future).await.expect("pruning works");
            match updates_page(&mut client, 1, group_id, 0, 10).await.expect("read") {
                pb::get_updates_response::Result::ResyncRequired(resync) => {
                    resync.oldest_retained_event_seq == latest + 1
                }
                pb::get_updates_response::Result::Page(_) => false,
            }
        }
    })
    .await;
}

async fn a_position_older_than_the_retained_log_answers_resync_required(storage: Storage) {
    let mut fixture = start(storage).await;
    let group_id = fixture.group(common::GroupKind::Community, 1, &[2]).await;
    for key in ["a", "b", "c"] {
        send_ok(&mut fixture.messages, 2, group_id, key, "soon pruned").await;
    }
    let latest = all_updates(&mut fixture.messages, 1, group_id).await.len() as i64;
    prune_everything(&mut fixture, group_id, latest).await;
    let client = &mut fixture.messages;

    for after in [0, 1, latest - 1] {
        let answer = updates_page(client, 1, group_id, after, 100).await.expect("read");
        let pb::get_updates_response::Result::ResyncRequired(resync) = answer else {
            panic!("after {after}: a hole must not be answered with a page: {answer:?}")
        };
        assert_eq!((resync.latest_event_seq, resync.oldest_retained_event_seq), (latest, latest + 1));
        assert!(resync.instructions.contains("ListMessages"), "what to do: {}", resync.instructions);
    }
    let at_latest = page(updates_page(client, 1, group_id, latest, 100).await.expect("read at the latest"));
    assert!(at_latest.updates.is_empty() && !at_latest.has_more);
    assert_eq!(at_latest.latest_event_seq, latest);

    let posted = send_ok(client, 2, group_id, "d", "after the prune").await;
    let next = page(updates_page(client, 1, group_id, latest, 100).await.expect("read on"));
    assert_eq!(next.updates.len(), 1);
    assert_eq!(next.updates[0].event_seq, latest + 1);
    assert_eq!(posted.event_seq, latest + 1, "sequences go on from where they were");
    assert_eq!(history(client, 1, group_id).await.len(), 4, "messages themselves are not pruned");
}

fn unbanned(outbox_id: i64, group_id: i64, user_id: i64) -> pb::SystemEvent {
    pb::SystemEvent {
        outbox_id,
        event: Some(common::GroupEvent {
            group_id,
            actor_user_id: 1,
            occurred_at: None,
            change: Some(GroupChange::MemberUnbanned(common::MemberUnbanned { user_id })),
        }),
    }
}

async fn append(client: &mut Client, events: Vec<pb::SystemEvent>) -> Vec<(i64, i64, i64)> {
    let request = tonic::Request::new(pb::AppendSystemUpdatesRequest { events });
    let response = client.append_system_updates(request).await.expect("AppendSystemUpdates succeeds");
    response.into_inner().appended.iter().map(|done| (done.outbox_id, done.group_id, done.event_seq)).collect()
}

async fn system_updates_are_appended_once_per_outbox_id(storage: Storage) {
    let mut fixture = start(storage).await;
    let group_id = fixture.group(common::GroupKind::Community, 1, &[2]).await;
    let other_group = fixture.group(common::GroupKind::Community, 5, &[]).await;
    let client = &mut fixture.messages;
    let latest = all_updates(client, 1, group_id).await.len() as i64;
    let other_latest = all_updates(client, 5, other_group).await.len() as i64;
    // Outbox ids far above the groups service's own, which its relay appends meanwhile.
    let (first, second, third) = (9_000_001, 9_000_002, 9_000_003);

    let appended = append(client, vec![unbanned(first, group_id, 70), unbanned(second, other_group, 71)]).await;
    assert_eq!(appended, vec![(first, group_id, latest + 1), (second, other_group, other_latest + 1)]);
    let again = append(client, vec![unbanned(first, group_id, 70), unbanned(second, other_group, 71)]).await;
    assert_eq!(again, appended, "a repeat answers the original event_seqs");
    let mixed = append(client, vec![unbanned(third, group_id, 72), unbanned(first, group_id, 70)]).await;
    assert_eq!(mixed, vec![(third, group_id, latest + 2), (first, group_id, latest + 1)]);

    let updates = all_updates(client, 1, group_id).await;
    assert_eq!(updates.len() as i64, latest + 2, "each outbox id is in the log once");
    let Some(Change::GroupEvent(event)) = &updates[latest as usize].change else { panic!("a group event") };
    assert_eq!(event, unbanned(first, group_id, 70).event.as_ref().expect("an event"), "logged as sent");
    assert_eq!(all_updates(client, 5, other_group).await.len() as i64, other_latest + 1);
    // Relayed changes are not messages.
    assert!(history(client, 1, group_id).await.is_empty());
}

/// A page of maximum-size messages stays within every caller's 4 MiB message limit: the
/// server cuts it by size (saying `has_more`) and the caller pages on to the end.
async fn a_page_of_big_updates_is_cut_by_size_and_pages_on(storage: Storage) {
    let mut fixture = start_with(storage, |config| config.limits.user_sends_per_second = 0).await;
    let group_id = fixture.group(common::GroupKind::Community, 1, &[]).await;
    let client = &mut fixture.messages;
    let before = all_updates(client, 1, group_id).await.last().map_or(0, |update| update.event_seq);
    // 300 messages of 4,096 four-byte characters: about 4.9 MB of log, more than one 4 MiB
    // response could carry.
    let text = "😀".repeat(4_096);
    let mut last = 0;
    for index in 0..300 {
        last = send_ok(client, 1, group_id, &format!("big-{index}"), &text).await.event_seq;
    }
    let first = page(updates_page(client, 1, group_id, before, 1_000).await.expect("a page, not a too-large error"));
    assert!(first.has_more, "cut short: {} updates", first.updates.len());
    assert!(first.updates.len() < 300, "the page holds {} updates", first.updates.len());
    let mut seen: Vec<i64> = first.updates.iter().map(|update| update.event_seq).collect();
    while seen.last().copied().unwrap_or(before) < last {
        let after = seen.last().copied().unwrap_or(before);
        let next = page(updates_page(client, 1, group_id, after, 1_000).await.expect("a page"));
        assert!(!next.updates.is_empty(), "a page after {after} holds something");
        seen.extend(next.updates.iter().map(|update| update.event_seq));
    }
    assert_eq!(seen, (before + 1..=last).collect::<Vec<_>>(), "every update once, in order");
}
