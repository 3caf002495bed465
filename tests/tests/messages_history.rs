//! Reading: ListMessages in both directions with anchors and page tokens, GetMessages by
//! id and by seq, and unread counts computed on read (docs/messages.md "Unread counts").

use std::collections::BTreeSet;

use fanfare_proto::common::v1::{GroupKind, Message};
use fanfare_proto::messages::v1 as pb;
use fanfare_testkit::{Storage, as_user};
use fanfare_tests::messages::{Client, history_paged, posted, send_ok, start, start_with, text, unread};
use fanfare_tests::on_every_storage;

on_every_storage!(
    history_pages_both_ways_from_any_anchor,
    page_tokens_walk_the_history_without_repeats_or_holes,
    messages_are_read_by_id_and_seq_with_the_missing_named,
    unread_counts_follow_posts_mentions_and_read_markers,
    unread_counts_cover_every_group_of_the_caller_when_none_is_named,
    deleted_and_purged_messages_mention_nobody,
);

/// One ListMessages page as `user`: the seqs listed and the next token.
async fn list(
    client: &mut Client,
    user: i64,
    group_id: i64,
    direction: pb::Direction,
    anchor: i64,
    page_size: i32,
    page_token: &str,
) -> (Vec<i64>, String) {
    let request = pb::ListMessagesRequest {
        group_id,
        direction: direction as i32,
        anchor_message_seq: anchor,
        page_size,
        page_token: page_token.to_owned(),
    };
    let page = client.list_messages(as_user(user, request)).await.expect("ListMessages succeeds").into_inner();
    (page.messages.iter().map(|message| message.message_seq).collect(), page.next_page_token)
}

/// A group with twelve messages from its owner (whose send rate is not limited here).
async fn twelve_messages(storage: Storage) -> (fanfare_tests::messages::Fixture, i64) {
    let mut fixture = start_with(storage, |config| config.limits.user_sends_per_second = 0).await;
    let group_id = fixture.group(GroupKind::Community, 1, &[2]).await;
    for index in 1..=12 {
        send_ok(&mut fixture.messages, 1, group_id, &format!("k-{index}"), &format!("message {index}")).await;
    }
    (fixture, group_id)
}

async fn history_pages_both_ways_from_any_anchor(storage: Storage) {
    use pb::Direction::{Backward, Forward};
    let (mut fixture, group_id) = twelve_messages(storage).await;
    let client = &mut fixture.messages;

    let (first, token) = list(client, 2, group_id, Forward, 0, 5, "").await;
    assert_eq!(first, vec![1, 2, 3, 4, 5]);
    let (second, token) = list(client, 2, group_id, Forward, 0, 5, &token).await;
    assert_eq!(second, vec![6, 7, 8, 9, 10]);
    let (last, token) = list(client, 2, group_id, Forward, 0, 5, &token).await;
    assert_eq!((last, token.as_str()), (vec![11, 12], ""), "the last page has no token");

    let (newest, token) = list(client, 2, group_id, Backward, 0, 5, "").await;
    assert_eq!(newest, vec![12, 11, 10, 9, 8]);
    let (older, token) = list(client, 2, group_id, Backward, 0, 5, &token).await;
    assert_eq!(older, vec![7, 6, 5, 4, 3]);
    assert_eq!(list(client, 2, group_id, Backward, 0, 5, &token).await, (vec![2, 1], String::new()));

    // The anchor places the first page only: strictly after (forward) or before (backward).
    let (after_four, token) = list(client, 2, group_id, Forward, 4, 3, "").await;
    assert_eq!(after_four, vec![5, 6, 7]);
    assert_eq!(list(client, 2, group_id, Forward, 4, 3, &token).await.0, vec![8, 9, 10]);
    assert_eq!(list(client, 2, group_id, Backward, 4, 3, "").await, (vec![3, 2, 1], String::new()));
    assert_eq!(list(client, 2, group_id, Forward, 9, 3, "").await, (vec![10, 11, 12], String::new()));
    assert_eq!(list(client, 2, group_id, Forward, 12, 3, "").await, (vec![], String::new()));
    assert_eq!(list(client, 2, group_id, Backward, 1, 3, "").await, (vec![], String::new()));
    assert_eq!(list(client, 2, group_id, Backward, 100, 2, "").await.0, vec![12, 11], "an anchor past the end");
    assert_eq!(list(client, 2, group_id, Forward, 0, 0, "").await.0.len(), 12, "page_size 0 means 50");
    assert_eq!(list(client, 2, group_id, Backward, 0, 100, "").await.0.len(), 12, "page_size 100 is allowed");
}

async fn page_tokens_walk_the_history_without_repeats_or_holes(storage: Storage) {
    let (mut fixture, group_id) = twelve_messages(storage).await;
    let client = &mut fixture.messages;
    for page_size in [1, 2, 5, 11, 12, 13] {
        let walked: Vec<i64> =
            history_paged(client, 2, group_id, page_size).await.iter().map(|m| m.message_seq).collect();
        assert_eq!(walked, (1..=12).collect::<Vec<i64>>(), "forward by {page_size}");

        let mut backward = Vec::new();
        let mut token = String::new();
        loop {
            let (seqs, next) = list(client, 2, group_id, pb::Direction::Backward, 0, page_size, &token).await;
            assert!(seqs.len() <= usize::try_from(page_size).expect("positive"), "a page is never larger than asked");
            backward.extend(seqs);
            if next.is_empty() {
                break;
            }
            token = next;
        }
        assert_eq!(backward, (1..=12).rev().collect::<Vec<i64>>(), "backward by {page_size}");
    }
}

async fn messages_are_read_by_id_and_seq_with_the_missing_named(storage: Storage) {
    let (mut fixture, group_id) = twelve_messages(storage).await;
    let client = &mut fixture.messages;
    let all = history_paged(client, 2, group_id, 100).await;
    let unknown_id = "0190f3c2-0000-7000-8000-000000000000".to_owned();
    let other_group = fixture.group(GroupKind::Community, 1, &[2]).await;
    let client = &mut fixture.messages;
    let elsewhere = send_ok(client, 1, other_group, "k", "another group").await;

    let request = pb::GetMessagesRequest {
        group_id,
        message_ids: vec![
            all[2].message_id.clone(),
            unknown_id.clone(),
            all[7].message_id.clone(),
            elsewhere.message_id,
        ],
        message_seqs: vec![8, 1, 40, 1, 13],
    };
    let read = client.get_messages(as_user(2, request)).await.expect("GetMessages succeeds").into_inner();
    let found: Vec<&Message> = read.messages.iter().collect();
    assert_eq!(found, vec![&all[0], &all[2], &all[7]], "found once each, by message_seq");
    let missing_ids: BTreeSet<&String> = read.missing_message_ids.iter().collect();
    assert_eq!(missing_ids.len(), 2, "the unknown id and the other group's: {missing_ids:?}");
    assert!(missing_ids.contains(&unknown_id));
    assert_eq!(read.missing_message_seqs, vec![40, 13]);
}

async fn unread_counts_follow_posts_mentions_and_read_markers(storage: Storage) {
    let mut fixture = start(storage).await;
    let group_id = fixture.group(GroupKind::Community, 1, &[2, 3]).await;
    let client = &mut fixture.messages;
    send_ok(client, 1, group_id, "m1", "plain").await;
    let to_two = pb::SendMessageRequest { mentioned_user_ids: vec![2], ..text(group_id, "m2", "@two") };
    posted(client.send_message(as_user(1, to_two)).await.map(tonic::Response::into_inner));
    let to_all = pb::SendMessageRequest { mentions_all: true, ..text(group_id, "m3", "@all") };
    posted(client.send_message(as_user(1, to_all)).await.map(tonic::Response::into_inner));
    let to_three = pb::SendMessageRequest { mentioned_user_ids: vec![3], ..text(group_id, "m4", "@three") };
    posted(client.send_message(as_user(1, to_three)).await.map(tonic::Response::into_inner));
    send_ok(client, 3, group_id, "m5", "reply from three").await;

    let two = unread(client, 2, group_id).await;
    assert_eq!((two.unread_messages, two.unread_mentions, two.last_message_seq, two.read_message_seq), (5, 2, 5, 0));
    let three = unread(client, 3, group_id).await;
    assert_eq!((three.unread_messages, three.unread_mentions, three.read_message_seq), (0, 0, 5), "own post reads all");
    let owner = unread(client, 1, group_id).await;
    assert_eq!((owner.unread_messages, owner.unread_mentions, owner.read_message_seq), (1, 0, 4));

    let mark = |message_seq| pb::MarkReadRequest { group_id, message_seq };
    let moved = client.mark_read(as_user(2, mark(2))).await.expect("marked").into_inner();
    assert_eq!(moved.read_message_seq, 2);
    let two = unread(client, 2, group_id).await;
    assert_eq!((two.unread_messages, two.unread_mentions), (3, 1), "only the @all mention is left");
    let behind = client.mark_read(as_user(2, mark(1))).await.expect("marked").into_inner();
    assert_eq!(behind.read_message_seq, 2, "a marker never moves backwards");
    let clamped = client.mark_read(as_user(2, mark(1_000))).await.expect("marked").into_inner();
    assert_eq!(clamped.read_message_seq, 5, "a marker is clamped to the last message");
    let two = unread(client, 2, group_id).await;
    assert_eq!((two.unread_messages, two.unread_mentions, two.read_message_seq), (0, 0, 5));

    send_ok(client, 1, group_id, "m6", "one more").await;
    let two = unread(client, 2, group_id).await;
    assert_eq!((two.unread_messages, two.last_message_seq), (1, 6));
}

async fn unread_counts_cover_every_group_of_the_caller_when_none_is_named(storage: Storage) {
    let mut fixture = start(storage).await;
    let busy = fixture.group(GroupKind::Community, 1, &[2]).await;
    let quiet = fixture.group(GroupKind::Chat, 3, &[2]).await;
    fixture.group(GroupKind::Community, 4, &[]).await;
    let client = &mut fixture.messages;
    send_ok(client, 1, busy, "a", "one").await;
    send_ok(client, 1, busy, "b", "two").await;
    let marked = client.mark_read(as_user(2, pb::MarkReadRequest { group_id: quiet, message_seq: 3 })).await;
    assert_eq!(marked.expect("marking an empty group").into_inner().read_message_seq, 0, "clamped to no message");

    let request = pb::GetUnreadCountsRequest { group_ids: Vec::new() };
    let counts = client.get_unread_counts(as_user(2, request)).await.expect("counted").into_inner().counts;
    let mut summary: Vec<(i64, i64, i64)> =
        counts.iter().map(|count| (count.group_id, count.unread_messages, count.last_message_seq)).collect();
    summary.sort_unstable();
    assert_eq!(summary, vec![(busy, 2, 2), (quiet, 0, 0)], "every group of the caller, and only those");

    let request = pb::GetUnreadCountsRequest { group_ids: vec![quiet, busy, quiet] };
    let counts = client.get_unread_counts(as_user(2, request)).await.expect("counted").into_inner().counts;
    let asked: Vec<i64> = counts.iter().map(|count| count.group_id).collect();
    assert_eq!(asked, vec![quiet, busy], "in the order asked, repeats once");
}

async fn deleted_and_purged_messages_mention_nobody(storage: Storage) {
    let mut fixture = start(storage).await;
    let group_id = fixture.group(GroupKind::Community, 1, &[2]).await;
    let client = &mut fixture.messages;
    let to_two = pb::SendMessageRequest { mentioned_user_ids: vec![2], ..text(group_id, "m1", "@two") };
    posted(client.send_message(as_user(1, to_two)).await.map(tonic::Response::into_inner));
    let to_all = pb::SendMessageRequest { mentions_all: true, ..text(group_id, "m2", "@all") };
    posted(client.send_message(as_user(1, to_all)).await.map(tonic::Response::into_inner));
    send_ok(client, 1, group_id, "m3", "plain").await;
    assert_eq!(unread(client, 2, group_id).await.unread_mentions, 2);

    // A tombstone has no content: it still counts as a message, but mentions nobody.
    let delete = pb::DeleteMessageRequest { group_id, message_seq: 1 };
    client.delete_message(as_user(1, delete)).await.expect("deleted");
    assert_eq!(unread(client, 2, group_id).await.unread_mentions, 1);
    let purge = pb::PurgeUserMessagesRequest { group_id, user_id: 1, since: None };
    client.purge_user_messages(as_user(1, purge)).await.expect("purged");
    let two = unread(client, 2, group_id).await;
    assert_eq!((two.unread_messages, two.unread_mentions), (3, 0));
}
