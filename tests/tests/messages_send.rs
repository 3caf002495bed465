//! SendMessage, rule by rule of docs/messages.md: what a posted message carries, idempotent
//! retries, gapless order under concurrency, rate limits and slow mode, who may post, and
//! the groups that refuse posts.

use std::collections::BTreeSet;
use std::time::Duration;

use fanfare_core::status::ErrorReason;
use fanfare_proto::common::v1::update::Change;
use fanfare_proto::common::v1::{Attachment, GroupKind, PostPolicy, Role};
use fanfare_proto::groups::v1 as groups_pb;
use fanfare_proto::messages::v1 as pb;
use fanfare_testkit::{Storage, as_user};
use fanfare_tests::groups::{expect_precondition, set_role};
use fanfare_tests::messages::{
    all_updates, expect_retry_reason, history, history_paged, posted, send, send_ok, start, start_with, text, timeline,
};
use fanfare_tests::{expect_code, expect_reason, on_every_storage};
use tokio::task::JoinSet;
use tonic::Code;

on_every_storage!(
    a_posted_message_carries_its_content_and_enters_the_log,
    a_retry_with_the_same_key_answers_the_original,
    a_reply_needs_an_existing_message,
    one_hundred_concurrent_senders_get_gapless_sequences,
    each_user_may_send_only_so_fast,
    slow_mode_spaces_a_members_posts_but_not_a_moderators,
    broadcast_groups_take_posts_from_the_owner_and_admins_only,
    admins_only_groups_and_at_all_are_for_moderators,
    an_archived_group_accepts_no_change,
);

fn photo() -> Attachment {
    Attachment {
        media_id: "media-1".into(),
        mime_type: "image/jpeg".into(),
        size_bytes: 2_048,
        width: 640,
        height: 480,
        duration_ms: 0,
    }
}

async fn a_posted_message_carries_its_content_and_enters_the_log(storage: Storage) {
    let mut fixture = start(storage).await;
    let group_id = fixture.group(GroupKind::Community, 1, &[2, 3]).await;
    let client = &mut fixture.messages;
    let first = send_ok(client, 2, group_id, "k-1", "hello").await;

    let request = pb::SendMessageRequest {
        group_id,
        client_message_id: "k-2".into(),
        text: "look".into(),
        attachments: vec![photo()],
        reply_to_message_seq: first.message_seq,
        mentioned_user_ids: vec![3, 2, 3],
        mentions_all: false,
    };
    let message = posted(client.send_message(as_user(1, request)).await.map(tonic::Response::into_inner));

    assert_eq!((message.group_id, message.message_seq, message.sender_user_id), (group_id, 2, 1));
    assert_eq!((message.client_message_id.as_str(), message.text.as_str()), ("k-2", "look"));
    assert_eq!(message.attachments, vec![photo()]);
    assert_eq!(message.reply_to_message_seq, 1);
    assert_eq!(message.mentioned_user_ids, vec![3, 2], "mentions keep request order without repeats");
    assert_eq!(message.version, 1);
    assert!(message.created_at.is_some() && message.edited_at.is_none() && message.deleted_at.is_none());
    assert!(message.reactions.is_empty() && !message.pinned);
    assert_eq!(message.message_id.len(), 36, "a UUID in text form: {}", message.message_id);
    assert_eq!(&message.message_id[14..15], "7", "a time-ordered UUID v7: {}", message.message_id);
    assert!(message.message_id > first.message_id, "ids are time-ordered");
    assert!(message.event_seq > first.event_seq);

    let updates = all_updates(client, 1, group_id).await;
    let logged = updates.iter().find(|update| update.event_seq == message.event_seq).expect("the post is logged");
    let Some(Change::MessagePosted(posted_update)) = &logged.change else { panic!("a MessagePosted: {logged:?}") };
    assert_eq!(posted_update.message.as_ref(), Some(&message), "the log carries the message as stored");
    assert_eq!(logged.group_id, group_id);
    assert_eq!(history(client, 3, group_id).await, vec![first, message], "history shows both, oldest first");
}

async fn a_retry_with_the_same_key_answers_the_original(storage: Storage) {
    let mut fixture = start(storage).await;
    let group_id = fixture.group(GroupKind::Community, 1, &[2]).await;
    let client = &mut fixture.messages;
    let original = send_ok(client, 2, group_id, "key-1", "hello").await;
    let log_before = all_updates(client, 1, group_id).await;

    let retry = send(client, 2, group_id, "key-1", "hello").await.expect("a retry succeeds");
    assert!(retry.duplicate, "the retry is recognised");
    assert_eq!(retry.message.as_ref(), Some(&original), "the retry answers the original message");

    let conflict = send(client, 2, group_id, "key-1", "something else").await;
    let conflict = expect_reason(conflict, Code::AlreadyExists, ErrorReason::IdempotencyConflict);
    assert!(conflict.message().contains("key-1"), "the conflict names the key: {}", conflict.message());
    assert!(conflict.message().contains("message 1"), "and the original message: {}", conflict.message());

    assert_eq!(history(client, 2, group_id).await, vec![original.clone()], "one message, not two");
    assert_eq!(all_updates(client, 1, group_id).await, log_before, "neither call wrote to the log");

    // The key is the sender's: another sender's identical key is another message.
    let other = send_ok(client, 1, group_id, "key-1", "hello").await;
    assert_eq!(other.message_seq, 2);
    assert_ne!(other.message_id, original.message_id);

    // The key lives as long as the message: a late retry of a deleted message is answered
    // with its tombstone, never a second copy.
    let delete = pb::DeleteMessageRequest { group_id, message_seq: original.message_seq };
    client.delete_message(as_user(2, delete)).await.expect("deleted");
    let late = send(client, 2, group_id, "key-1", "hello").await.expect("a late retry succeeds");
    assert!(late.duplicate);
    let tombstone = late.message.expect("the original");
    assert_eq!((tombstone.message_id.as_str(), tombstone.message_seq), (original.message_id.as_str(), 1));
    assert!(tombstone.deleted_at.is_some());
    assert_eq!(history(client, 2, group_id).await.len(), 2);
}

async fn a_reply_needs_an_existing_message(storage: Storage) {
    let mut fixture = start(storage).await;
    let group_id = fixture.group(GroupKind::Community, 1, &[]).await;
    let client = &mut fixture.messages;
    let request = pb::SendMessageRequest { reply_to_message_seq: 5, ..text(group_id, "k", "re") };
    let missing = client.send_message(as_user(1, request)).await;
    expect_code(missing, Code::NotFound);
    assert!(history(client, 1, group_id).await.is_empty(), "nothing was posted");
    assert_eq!(send_ok(client, 1, group_id, "k2", "first").await.message_seq, 1, "no seq was consumed");
}

async fn one_hundred_concurrent_senders_get_gapless_sequences(storage: Storage) {
    let mut fixture = start(storage).await;
    let senders: Vec<i64> = (1_000..1_100).collect();
    let group_id = fixture.group(GroupKind::Community, 1, &senders).await;

    let mut sends = JoinSet::new();
    for sender in senders.iter().copied() {
        let mut client = fixture.messages.clone();
        sends.spawn(async move { send_ok(&mut client, sender, group_id, "only", &format!("from {sender}")).await });
    }
    let mut posted = Vec::new();
    while let Some(joined) = sends.join_next().await {
        posted.push(joined.expect("a send task completes"));
    }

    let seqs: BTreeSet<i64> = posted.iter().map(|message| message.message_seq).collect();
    assert_eq!(seqs, (1..=100).collect::<BTreeSet<i64>>(), "message_seq is exactly 1..=100");
    let senders_seen: BTreeSet<i64> = posted.iter().map(|message| message.sender_user_id).collect();
    assert_eq!(senders_seen.len(), 100);

    // Small pages, so the log is read across many GetUpdates calls.
    let updates = fanfare_tests::messages::all_updates_paged(&mut fixture.messages, 1, group_id, 7).await;
    let event_seqs: Vec<i64> = updates.iter().map(|update| update.event_seq).collect();
    let expected: Vec<i64> = (1..=i64::try_from(updates.len()).expect("a small log")).collect();
    assert_eq!(event_seqs, expected, "event_seq is contiguous from 1 with no repeat");
    let posts: Vec<(i64, i64)> = timeline(&updates)
        .iter()
        .map(|update| match &update.change {
            Some(Change::MessagePosted(posted)) => {
                let message = posted.message.as_ref().expect("the message");
                assert_eq!(message.event_seq, update.event_seq, "a message records the entry that posted it");
                (message.message_seq, update.event_seq)
            }
            other => panic!("only posts were made: {other:?}"),
        })
        .collect();
    assert_eq!(posts.len(), 100);
    assert!(posts.windows(2).all(|pair| pair[0].0 + 1 == pair[1].0), "posts are logged in message_seq order");

    let listed = history_paged(&mut fixture.messages, 1, group_id, 30).await;
    let listed_seqs: Vec<i64> = listed.iter().map(|message| message.message_seq).collect();
    assert_eq!(listed_seqs, (1..=100).collect::<Vec<i64>>());
}

async fn each_user_may_send_only_so_fast(storage: Storage) {
    let mut fixture = start_with(storage, |config| {
        config.limits.user_sends_per_second = 1;
        config.limits.user_sends_burst = 1;
    })
    .await;
    let group_id = fixture.group(GroupKind::Community, 1, &[2]).await;
    let client = &mut fixture.messages;
    send_ok(client, 2, group_id, "a", "one").await;
    let delay = expect_retry_reason(send(client, 2, group_id, "b", "two").await, ErrorReason::RateLimited);
    assert!(delay <= Duration::from_secs(1), "the wait is at most one interval: {delay:?}");
    send_ok(client, 1, group_id, "a", "others are not slowed").await;
    assert_eq!(history(client, 1, group_id).await.len(), 2, "the refused send wrote nothing");
}

async fn slow_mode_spaces_a_members_posts_but_not_a_moderators(storage: Storage) {
    let mut fixture = start(storage).await;
    let group_id = fixture.group(GroupKind::Community, 1, &[2]).await;
    let slow = groups_pb::UpdateGroupSettingsRequest { group_id, slow_mode_seconds: Some(60), ..Default::default() };
    fixture.update_settings(1, slow).await;
    let client = &mut fixture.messages;

    let first = send_ok(client, 2, group_id, "m-1", "first").await;
    let delay = expect_retry_reason(send(client, 2, group_id, "m-2", "too soon").await, ErrorReason::SlowMode);
    assert!(delay > Duration::from_secs(50) && delay <= Duration::from_secs(60), "the exact wait: {delay:?}");
    let retry = send(client, 2, group_id, "m-1", "first").await.expect("a retry is not slowed down");
    assert!(retry.duplicate);
    assert_eq!(retry.message, Some(first));

    send_ok(client, 1, group_id, "o-1", "owners are exempt").await;
    send_ok(client, 1, group_id, "o-2", "owners are exempt").await;
    assert_eq!(history(client, 1, group_id).await.len(), 3);
}

async fn broadcast_groups_take_posts_from_the_owner_and_admins_only(storage: Storage) {
    let mut fixture = start(storage).await;
    let group_id = fixture.group(GroupKind::Broadcast, 1, &[2, 3]).await;
    set_role(&mut fixture.groups, 1, group_id, 2, Role::Admin).await;
    fixture.settle().await;
    let client = &mut fixture.messages;

    let by_owner = send_ok(client, 1, group_id, "o", "new drop tomorrow").await;
    send_ok(client, 2, group_id, "a", "admins post too").await;
    let by_member = send(client, 3, group_id, "m", "me too").await;
    let by_member = expect_reason(by_member, Code::PermissionDenied, ErrorReason::PermissionDenied);
    assert!(by_member.message().contains("admins"), "{}", by_member.message());

    let reaction = pb::AddReactionRequest { group_id, message_seq: by_owner.message_seq, emoji: "🔥".into() };
    let reacted = client.add_reaction(as_user(3, reaction)).await.expect("members react").into_inner();
    assert_eq!(fanfare_tests::messages::totals(&reacted.reactions), vec![("🔥".to_owned(), 1)]);
    assert_eq!(history(client, 3, group_id).await.len(), 2, "members read the channel");
}

async fn admins_only_groups_and_at_all_are_for_moderators(storage: Storage) {
    let mut fixture = start(storage).await;
    let group_id = fixture.group(GroupKind::Community, 1, &[2]).await;
    let client = &mut fixture.messages;

    let everyone = pb::SendMessageRequest { mentions_all: true, ..text(group_id, "all-1", "@all hi") };
    let by_member = client.send_message(as_user(2, everyone.clone())).await;
    expect_code(by_member, Code::PermissionDenied);
    let by_owner = posted(client.send_message(as_user(1, everyone)).await.map(tonic::Response::into_inner));
    assert!(by_owner.mentions_all);

    let admins_only = groups_pb::UpdateGroupSettingsRequest {
        group_id,
        post_policy: Some(PostPolicy::AdminsOnly as i32),
        ..Default::default()
    };
    fixture.update_settings(1, admins_only).await;
    let client = &mut fixture.messages;
    expect_code(send(client, 2, group_id, "m", "hello?").await, Code::PermissionDenied);
    send_ok(client, 1, group_id, "o", "announcement").await;
    assert_eq!(history(client, 2, group_id).await.len(), 2);
}

async fn an_archived_group_accepts_no_change(storage: Storage) {
    let mut fixture = start(storage).await;
    let group_id = fixture.group(GroupKind::Community, 1, &[2]).await;
    let message = send_ok(&mut fixture.messages, 2, group_id, "k", "before").await;
    let archive = groups_pb::ArchiveGroupRequest { group_id };
    fixture.groups.archive_group(as_user(1, archive)).await.expect("the owner archives");
    fixture.settle().await;
    let client = &mut fixture.messages;

    expect_precondition(send(client, 2, group_id, "k2", "after").await, "ARCHIVED");
    let edit = pb::EditMessageRequest { group_id, message_seq: message.message_seq, text: "changed".into() };
    expect_precondition(client.edit_message(as_user(2, edit)).await, "ARCHIVED");
    let react = pb::AddReactionRequest { group_id, message_seq: 1, emoji: "👍".into() };
    expect_precondition(client.add_reaction(as_user(2, react)).await, "ARCHIVED");
    let pin = pb::PinMessageRequest { group_id, message_seq: 1 };
    expect_precondition(client.pin_message(as_user(1, pin)).await, "ARCHIVED");
    let delete = pb::DeleteMessageRequest { group_id, message_seq: 1 };
    expect_precondition(client.delete_message(as_user(1, delete)).await, "ARCHIVED");

    assert_eq!(history(client, 2, group_id).await, vec![message], "reads still work; nothing changed");
}
