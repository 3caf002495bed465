//! Edits, deletes and purges, by the rows of docs/messages.md "Who may do what": each
//! appears in the update log as its own kind of change, edits are the sender's within the
//! edit window, deletes the sender's or a moderator's, purges a moderator's.

use fanfare_core::status::ErrorReason;
use fanfare_proto::common::v1::update::Change;
use fanfare_proto::common::v1::{Attachment, GroupKind, Message, Role};
use fanfare_proto::messages::v1 as pb;
use fanfare_testkit::{Storage, as_user};
use fanfare_tests::groups::{expect_precondition, set_role};
use fanfare_tests::messages::{
    Client, all_updates, get_one, history, posted, send_ok, snapshot, start, start_with, text, timeline,
};
use fanfare_tests::{expect_code, expect_reason, on_every_storage};
use tonic::{Code, Status};

on_every_storage!(
    edits_deletes_and_purges_appear_in_the_log,
    only_the_sender_edits_and_only_what_is_there,
    no_edit_once_the_window_has_passed,
    moderators_delete_others_messages_and_members_do_not,
    purges_are_for_moderators_and_may_start_at_a_time,
);

async fn edit(client: &mut Client, user: i64, group_id: i64, message_seq: i64, body: &str) -> Result<Message, Status> {
    let request = pb::EditMessageRequest { group_id, message_seq, text: body.to_owned() };
    let response = client.edit_message(as_user(user, request)).await?.into_inner();
    Ok(response.message.expect("the edited message"))
}

async fn delete(client: &mut Client, user: i64, group_id: i64, message_seq: i64) -> Result<Message, Status> {
    let request = pb::DeleteMessageRequest { group_id, message_seq };
    let response = client.delete_message(as_user(user, request)).await?.into_inner();
    Ok(response.message.expect("the tombstone"))
}

async fn purge(
    client: &mut Client,
    user: i64,
    group_id: i64,
    target: i64,
    since: Option<prost_types::Timestamp>,
) -> Result<pb::PurgeUserMessagesResponse, Status> {
    let request = pb::PurgeUserMessagesRequest { group_id, user_id: target, since };
    client.purge_user_messages(as_user(user, request)).await.map(tonic::Response::into_inner)
}

#[track_caller]
fn assert_tombstone(message: &Message) {
    assert!(message.deleted_at.is_some(), "deleted_at is set: {message:?}");
    assert!(message.text.is_empty() && message.attachments.is_empty(), "content is cleared: {message:?}");
    assert!(message.mentioned_user_ids.is_empty() && !message.pinned, "{message:?}");
}

async fn edits_deletes_and_purges_appear_in_the_log(storage: Storage) {
    let mut fixture = start(storage).await;
    let group_id = fixture.group(GroupKind::Community, 1, &[2, 3]).await;
    let client = &mut fixture.messages;
    let with_photo = pb::SendMessageRequest {
        attachments: vec![Attachment {
            media_id: "m".into(),
            mime_type: "image/png".into(),
            size_bytes: 1,
            ..Default::default()
        }],
        mentioned_user_ids: vec![3],
        ..text(group_id, "k-1", "frist")
    };
    let first = posted(client.send_message(as_user(2, with_photo)).await.map(tonic::Response::into_inner));
    send_ok(client, 2, group_id, "k-2", "oops").await;
    send_ok(client, 2, group_id, "k-3", "spam").await;
    send_ok(client, 3, group_id, "k-1", "mine stays").await;

    let edited = edit(client, 2, group_id, 1, "first").await.expect("the sender edits");
    assert_eq!((edited.text.as_str(), edited.version), ("first", 2));
    assert!(edited.edited_at.is_some());
    assert_eq!(edited.attachments, first.attachments, "an edit changes the text only");
    assert_eq!(edited.mentioned_user_ids, vec![3]);
    assert_eq!(edit(client, 2, group_id, 1, "first!").await.expect("edited again").version, 3);

    let tombstone = delete(client, 2, group_id, 2).await.expect("the sender deletes");
    assert_tombstone(&tombstone);
    let purged = purge(client, 1, group_id, 2, None).await.expect("the owner purges");
    assert_eq!(purged.purged_count, 2, "the live messages of user 2: 1 and 3");

    let updates = all_updates(client, 1, group_id).await;
    let changes: Vec<&Change> = timeline(&updates).iter().filter_map(|update| update.change.as_ref()).collect();
    assert_eq!(changes.len(), 8, "4 posts, 2 edits, 1 delete, 1 purge: {changes:?}");
    let Change::MessageEdited(edit_change) = changes[4] else { panic!("an edit: {:?}", changes[4]) };
    let edited_in_log = edit_change.message.as_ref().expect("the message after the edit");
    assert_eq!((edited_in_log.message_seq, edited_in_log.version, edited_in_log.text.as_str()), (1, 2, "first"));
    let Change::MessageEdited(second_edit) = changes[5] else { panic!("an edit: {:?}", changes[5]) };
    assert_eq!(second_edit.message.as_ref().map(|message| message.version), Some(3));
    let Change::MessageDeleted(deleted) = changes[6] else { panic!("a delete: {:?}", changes[6]) };
    assert_eq!((deleted.message_seq, deleted.deleted_by_user_id), (2, 2));
    assert_eq!(deleted.message_id, tombstone.message_id);
    let Change::MessagesPurged(purge_change) = changes[7] else { panic!("a purge: {:?}", changes[7]) };
    assert_eq!((purge_change.user_id, purge_change.purged_by_user_id), (2, 1));
    assert_eq!(purge_change.message_seqs, vec![1, 3]);
    let purge_entry = updates.iter().find(|update| matches!(update.change, Some(Change::MessagesPurged(_))));
    assert_eq!(purge_entry.map(|update| update.event_seq), Some(purged.event_seq));

    let listed = history(client, 3, group_id).await;
    assert_eq!(listed.len(), 4, "tombstones stay in history");
    listed[..3].iter().for_each(assert_tombstone);
    assert_eq!(listed[3].text, "mine stays");

    let before = snapshot(client, 1, group_id).await;
    let nothing = purge(client, 1, group_id, 2, None).await.expect("purging nothing succeeds");
    assert_eq!((nothing.purged_count, nothing.event_seq), (0, 0));
    assert_eq!(snapshot(client, 1, group_id).await, before, "nothing to purge writes nothing");
}

async fn only_the_sender_edits_and_only_what_is_there(storage: Storage) {
    let mut fixture = start(storage).await;
    let group_id = fixture.group(GroupKind::Community, 1, &[2, 3]).await;
    let client = &mut fixture.messages;
    send_ok(client, 2, group_id, "k", "mine").await;
    let before = snapshot(client, 1, group_id).await;

    expect_reason(edit(client, 3, group_id, 1, "yours?").await, Code::PermissionDenied, ErrorReason::NotSender);
    expect_reason(edit(client, 1, group_id, 1, "owners neither").await, Code::PermissionDenied, ErrorReason::NotSender);
    expect_reason(edit(client, 2, group_id, 9, "nothing here").await, Code::NotFound, ErrorReason::MessageNotFound);
    assert_eq!(snapshot(client, 1, group_id).await, before, "refused edits change nothing");

    delete(client, 2, group_id, 1).await.expect("deleted");
    expect_precondition(edit(client, 2, group_id, 1, "undelete").await, "DELETED");
}

async fn no_edit_once_the_window_has_passed(storage: Storage) {
    let mut fixture = start_with(storage, |config| config.limits.edit_window_seconds = 0).await;
    let group_id = fixture.group(GroupKind::Community, 1, &[2]).await;
    let client = &mut fixture.messages;
    let message = send_ok(client, 2, group_id, "k", "typo").await;
    let before = snapshot(client, 1, group_id).await;

    let closed = expect_precondition(edit(client, 2, group_id, 1, "fixed").await, "EDIT_WINDOW");
    assert!(closed.message().contains("edit window"), "{}", closed.message());
    assert_eq!(snapshot(client, 1, group_id).await, before);
    assert_eq!(get_one(client, 2, group_id, 1).await, message, "the message is as sent");
}

async fn moderators_delete_others_messages_and_members_do_not(storage: Storage) {
    let mut fixture = start(storage).await;
    let group_id = fixture.group(GroupKind::Community, 1, &[2, 3, 4]).await;
    set_role(&mut fixture.groups, 1, group_id, 4, Role::Admin).await;
    fixture.settle().await;
    let client = &mut fixture.messages;
    for key in ["a", "b", "c"] {
        send_ok(client, 2, group_id, key, "by two").await;
    }

    let before = snapshot(client, 1, group_id).await;
    expect_code(delete(client, 3, group_id, 1).await, Code::PermissionDenied);
    expect_code(delete(client, 3, group_id, 42).await, Code::NotFound);
    assert_eq!(snapshot(client, 1, group_id).await, before);

    assert_tombstone(&delete(client, 4, group_id, 1).await.expect("an admin deletes"));
    assert_tombstone(&delete(client, 1, group_id, 2).await.expect("the owner deletes"));
    let after_deletes = snapshot(client, 1, group_id).await;
    let again = delete(client, 1, group_id, 2).await.expect("deleting a tombstone again answers it");
    assert_tombstone(&again);
    assert_eq!(snapshot(client, 1, group_id).await, after_deletes, "a repeated delete writes nothing");

    let updates = all_updates(client, 1, group_id).await;
    let deleted_by: Vec<(i64, i64)> = updates
        .iter()
        .filter_map(|update| match &update.change {
            Some(Change::MessageDeleted(deleted)) => Some((deleted.message_seq, deleted.deleted_by_user_id)),
            _ => None,
        })
        .collect();
    assert_eq!(deleted_by, vec![(1, 4), (2, 1)]);
    assert_eq!(get_one(client, 3, group_id, 3).await.text, "by two", "message 3 is untouched");
}

async fn purges_are_for_moderators_and_may_start_at_a_time(storage: Storage) {
    let mut fixture = start(storage).await;
    let group_id = fixture.group(GroupKind::Community, 1, &[2, 3]).await;
    let client = &mut fixture.messages;
    send_ok(client, 2, group_id, "a", "old").await;
    let second = send_ok(client, 2, group_id, "b", "new").await;
    send_ok(client, 2, group_id, "c", "newer").await;

    let before = snapshot(client, 1, group_id).await;
    expect_code(purge(client, 3, group_id, 2, None).await, Code::PermissionDenied);
    expect_code(purge(client, 2, group_id, 2, None).await, Code::PermissionDenied);
    assert_eq!(snapshot(client, 1, group_id).await, before);

    let purged = purge(client, 1, group_id, 2, second.created_at).await.expect("purged since a time");
    assert_eq!(purged.purged_count, 2, "messages sent at or after `since`");
    let listed = history(client, 1, group_id).await;
    assert_eq!(listed[0].text, "old");
    listed[1..].iter().for_each(assert_tombstone);
}
