//! Bad input, part two: every field of every RPC but SendMessage (see
//! `messages_input_send.rs`), and extreme values that must be answered, never panic. Each
//! refusal names its field and writes nothing.

use fanfare_core::status::ErrorReason;
use fanfare_proto::common::v1 as common;
use fanfare_proto::common::v1::GroupKind;
use fanfare_proto::messages::v1 as pb;
use fanfare_proto::prost_types::Timestamp;
use fanfare_testkit::{Storage, as_user};
use fanfare_tests::messages::{Client, Fixture, history, send_ok, snapshot, start_with, updates_page};
use fanfare_tests::{error_metadata, expect_code, expect_field_violation, expect_reason, on_every_storage};
use tonic::{Code, Request, Status};

on_every_storage!(
    message_changes_name_each_bad_field,
    reads_name_each_bad_field,
    append_system_updates_names_each_bad_field_and_appends_nothing,
    extreme_values_are_answered_not_panicked_on,
);

const MAX_TEXT: usize = 20;

async fn fixture(storage: Storage) -> (Fixture, i64) {
    let mut fixture = start_with(storage, |config| config.limits.max_text_chars = MAX_TEXT).await;
    let group_id = fixture.group(GroupKind::Community, 1, &[2]).await;
    send_ok(&mut fixture.messages, 2, group_id, "seed", "a first message").await;
    (fixture, group_id)
}

/// Asserts each result is INVALID_ARGUMENT naming the paired field.
#[track_caller]
fn assert_violations(results: Vec<(&str, Result<(), Status>)>) {
    for (field, result) in results {
        expect_field_violation(result, field);
    }
}

async fn message_changes_name_each_bad_field(storage: Storage) {
    let (mut fixture, group_id) = fixture(storage).await;
    let client = &mut fixture.messages;
    let before = snapshot(client, 1, group_id).await;
    let edit = |group_id, message_seq, text: &str| pb::EditMessageRequest { group_id, message_seq, text: text.into() };
    let delete = |group_id, message_seq| pb::DeleteMessageRequest { group_id, message_seq };
    let add =
        |group_id, message_seq, emoji: &str| pb::AddReactionRequest { group_id, message_seq, emoji: emoji.into() };
    let remove =
        |group_id, message_seq, emoji: &str| pb::RemoveReactionRequest { group_id, message_seq, emoji: emoji.into() };
    let purge = |group_id, user_id, since| pb::PurgeUserMessagesRequest { group_id, user_id, since };
    let bad_time = |seconds, nanos| Some(Timestamp { seconds, nanos });
    let pin = |group_id, message_seq| pb::PinMessageRequest { group_id, message_seq };
    let unpin = |group_id, message_seq| pb::UnpinMessageRequest { group_id, message_seq };

    let mut results: Vec<(&str, Result<(), Status>)> = Vec::new();
    for (field, request) in [
        ("group_id", edit(0, 1, "fixed")),
        ("message_seq", edit(group_id, 0, "fixed")),
        ("message_seq", edit(group_id, -1, "fixed")),
        ("text", edit(group_id, 1, "")),
        ("text", edit(group_id, 1, &"x".repeat(MAX_TEXT + 1))),
        ("text", edit(group_id, 1, "nul\u{0}")),
    ] {
        results.push((field, client.edit_message(as_user(2, request)).await.map(drop)));
    }
    for (field, request) in [("group_id", delete(-1, 1)), ("message_seq", delete(group_id, 0))] {
        results.push((field, client.delete_message(as_user(2, request)).await.map(drop)));
    }
    for (field, request) in [
        ("group_id", purge(0, 2, None)),
        ("user_id", purge(group_id, 0, None)),
        ("user_id", purge(group_id, -2, None)),
        ("since", purge(group_id, 2, bad_time(0, -1))),
        ("since", purge(group_id, 2, bad_time(0, 1_000_000_000))),
        ("since", purge(group_id, 2, bad_time(i64::MAX, 0))),
    ] {
        results.push((field, client.purge_user_messages(as_user(1, request)).await.map(drop)));
    }
    let bad_emojis = [String::new(), "a b".into(), "x".repeat(17), "\u{1b}".into()];
    for emoji in &bad_emojis {
        results.push(("emoji", client.add_reaction(as_user(2, add(group_id, 1, emoji))).await.map(drop)));
        results.push(("emoji", client.remove_reaction(as_user(2, remove(group_id, 1, emoji))).await.map(drop)));
    }
    for (field, group, seq) in [("group_id", 0, 1), ("message_seq", group_id, 0), ("message_seq", group_id, -9)] {
        results.push((field, client.add_reaction(as_user(2, add(group, seq, "👍"))).await.map(drop)));
        results.push((field, client.remove_reaction(as_user(2, remove(group, seq, "👍"))).await.map(drop)));
        results.push((field, client.pin_message(as_user(1, pin(group, seq))).await.map(drop)));
        results.push((field, client.unpin_message(as_user(1, unpin(group, seq))).await.map(drop)));
    }
    assert_violations(results);
    assert_eq!(snapshot(client, 1, group_id).await, before, "no refused change wrote anything");
}

async fn reads_name_each_bad_field(storage: Storage) {
    let (mut fixture, group_id) = fixture(storage).await;
    let client = &mut fixture.messages;
    let before = snapshot(client, 1, group_id).await;
    let list = |direction: i32, anchor_message_seq, page_size, page_token: &str| pb::ListMessagesRequest {
        group_id,
        direction,
        anchor_message_seq,
        page_size,
        page_token: page_token.into(),
    };
    let forward = pb::Direction::Forward as i32;
    // A well-formed token holding a message_seq of -1 is not one this method returned.
    let negative_token = format!("1{}", "f".repeat(16));

    let mut results: Vec<(&str, Result<(), Status>)> = Vec::new();
    for (field, request) in [
        ("group_id", pb::ListMessagesRequest { group_id: 0, ..list(forward, 0, 0, "") }),
        ("direction", list(pb::Direction::Unspecified as i32, 0, 0, "")),
        ("direction", list(7, 0, 0, "")),
        ("page_size", list(forward, 0, -1, "")),
        ("page_size", list(forward, 0, 101, "")),
        ("page_size", list(forward, 0, 1_001, "")),
        ("anchor_message_seq", list(forward, -1, 0, "")),
        ("page_token", list(forward, 0, 0, "garbage")),
        ("page_token", list(forward, 0, 0, "1zzzzzzzzzzzzzzzz")),
        ("page_token", list(forward, 0, 0, &negative_token)),
    ] {
        results.push((field, client.list_messages(as_user(2, request)).await.map(drop)));
    }
    let get = |message_ids: Vec<String>, message_seqs: Vec<i64>| pb::GetMessagesRequest {
        group_id,
        message_ids,
        message_seqs,
    };
    let uuid = "0190f3c2-0000-7000-8000-000000000000".to_owned();
    for (field, request) in [
        ("group_id", pb::GetMessagesRequest { group_id: -1, ..get(Vec::new(), vec![1]) }),
        ("message_ids", get(Vec::new(), Vec::new())),
        ("message_ids", get(Vec::new(), (1..=101).collect())),
        ("message_ids", get(vec![uuid.clone(); 60], (1..=41).collect())),
        ("message_ids[1]", get(vec![uuid.clone(), "not-a-uuid".into()], Vec::new())),
        ("message_ids[0]", get(vec![String::new()], Vec::new())),
        ("message_seqs[2]", get(Vec::new(), vec![1, 2, 0])),
    ] {
        results.push((field, client.get_messages(as_user(2, request)).await.map(drop)));
    }
    let updates = |group_id, after_event_seq, page_size| pb::GetUpdatesRequest {
        group_id,
        after_event_seq,
        page_size,
        ..Default::default()
    };
    for (field, request) in [
        ("group_id", updates(0, 0, 0)),
        ("after_event_seq", updates(group_id, -1, 0)),
        ("page_size", updates(group_id, 0, -1)),
        ("page_size", updates(group_id, 0, 1_001)),
    ] {
        results.push((field, client.get_updates(as_user(2, request)).await.map(drop)));
    }
    for (field, request) in [
        ("group_id", pb::MarkReadRequest { group_id: 0, message_seq: 1 }),
        ("message_seq", pb::MarkReadRequest { group_id, message_seq: 0 }),
        ("message_seq", pb::MarkReadRequest { group_id, message_seq: -3 }),
    ] {
        results.push((field, client.mark_read(as_user(2, request)).await.map(drop)));
    }
    for (field, group_ids) in [("group_ids[1]", vec![group_id, 0]), ("group_ids", (1..=1_001).collect())] {
        let request = pb::GetUnreadCountsRequest { group_ids };
        results.push((field, client.get_unread_counts(as_user(2, request)).await.map(drop)));
    }
    assert_violations(results);
    assert_eq!(snapshot(client, 1, group_id).await, before, "reads write nothing, refused or not");
    assert_eq!(fanfare_tests::messages::unread(client, 2, group_id).await.read_message_seq, 1, "marker unmoved");
}

fn event(group_id: i64, change: Option<common::group_event::Change>) -> Option<common::GroupEvent> {
    Some(common::GroupEvent { group_id, actor_user_id: 1, occurred_at: None, change })
}

fn unmuted(user_id: i64) -> Option<common::group_event::Change> {
    Some(common::group_event::Change::MemberUnmuted(common::MemberUnmuted { user_id }))
}

async fn append(client: &mut Client, events: Vec<pb::SystemEvent>) -> Result<(), Status> {
    client.append_system_updates(Request::new(pb::AppendSystemUpdatesRequest { events })).await.map(drop)
}

async fn append_system_updates_names_each_bad_field_and_appends_nothing(storage: Storage) {
    let (mut fixture, group_id) = fixture(storage).await;
    let client = &mut fixture.messages;
    let before = snapshot(client, 1, group_id).await;
    let good = |outbox_id| pb::SystemEvent { outbox_id, event: event(group_id, unmuted(2)) };

    let mut results: Vec<(&str, Result<(), Status>)> = Vec::new();
    results.push(("events", append(client, Vec::new()).await));
    results.push(("events", append(client, (1..=501).map(|id| good(8_000_000 + id)).collect()).await));
    for (field, second) in [
        ("events[1].outbox_id", pb::SystemEvent { outbox_id: 0, ..good(0) }),
        ("events[1].outbox_id", pb::SystemEvent { outbox_id: -5, ..good(0) }),
        ("events[1].event", pb::SystemEvent { outbox_id: 8_000_002, event: None }),
        ("events[1].event.group_id", pb::SystemEvent { outbox_id: 8_000_002, event: event(0, unmuted(2)) }),
        ("events[1].event.change", pb::SystemEvent { outbox_id: 8_000_002, event: event(group_id, None) }),
    ] {
        // The first event is valid: a request with one bad event appends none of them.
        results.push((field, append(client, vec![good(8_000_001), second]).await));
    }
    assert_violations(results);
    assert_eq!(snapshot(client, 1, group_id).await, before, "nothing was appended");

    append(client, vec![good(8_000_001)]).await.expect("the valid event alone is appended");
    assert_eq!(snapshot(client, 1, group_id).await.latest_event_seq, before.latest_event_seq + 1);
}

async fn extreme_values_are_answered_not_panicked_on(storage: Storage) {
    let (mut fixture, group_id) = fixture(storage).await;
    let client = &mut fixture.messages;
    let max = i64::MAX;

    let edit = pb::EditMessageRequest { group_id, message_seq: max, text: "x".into() };
    let missing =
        expect_reason(client.edit_message(as_user(2, edit)).await, Code::NotFound, ErrorReason::MessageNotFound);
    assert_eq!(error_metadata(&missing, "message_seq"), max.to_string());
    let delete = pb::DeleteMessageRequest { group_id, message_seq: max };
    expect_code(client.delete_message(as_user(2, delete)).await, Code::NotFound);
    let react = pb::AddReactionRequest { group_id, message_seq: max, emoji: "👍".into() };
    expect_code(client.add_reaction(as_user(2, react)).await, Code::NotFound);
    let pin = pb::PinMessageRequest { group_id, message_seq: max };
    expect_code(client.pin_message(as_user(1, pin)).await, Code::NotFound);
    let reply =
        pb::SendMessageRequest { reply_to_message_seq: max, ..fanfare_tests::messages::text(group_id, "r", "re") };
    expect_reason(client.send_message(as_user(2, reply)).await, Code::NotFound, ErrorReason::ReplyTargetNotFound);
    expect_reason(
        client.get_updates(as_user(2, pb::GetUpdatesRequest { group_id: max, ..Default::default() })).await,
        Code::NotFound,
        ErrorReason::GroupNotFound,
    );

    let mark = pb::MarkReadRequest { group_id, message_seq: max };
    assert_eq!(client.mark_read(as_user(1, mark)).await.expect("marked").into_inner().read_message_seq, 1);
    for (direction, anchor) in [(pb::Direction::Forward, max), (pb::Direction::Backward, max)] {
        let request = pb::ListMessagesRequest {
            group_id,
            direction: direction as i32,
            anchor_message_seq: anchor,
            page_size: 100,
            page_token: String::new(),
        };
        client.list_messages(as_user(2, request)).await.expect("an anchor far away is just far away");
    }
    let get = pb::GetMessagesRequest { group_id, message_ids: Vec::new(), message_seqs: vec![max] };
    let read = client.get_messages(as_user(2, get)).await.expect("read").into_inner();
    assert_eq!(read.missing_message_seqs, vec![max]);
    // A position the log never reached answers resync (the log went backwards), not a panic.
    let far = updates_page(client, 2, group_id, max, 1_000).await.expect("read far ahead");
    assert!(matches!(far, pb::get_updates_response::Result::ResyncRequired(_)), "{far:?}");

    // The earliest and latest times a Timestamp can name: the purge covers all, or none.
    for (seconds, expected) in [(-8_000_000_000_000, 1), (8_000_000_000_000, 0)] {
        let since = Some(Timestamp { seconds, nanos: 0 });
        let purge = pb::PurgeUserMessagesRequest { group_id, user_id: 2, since };
        let answer = client.purge_user_messages(as_user(1, purge)).await;
        assert_eq!(answer.expect("any valid time is accepted").into_inner().purged_count, expected, "since {seconds}");
    }
    assert!(history(client, 1, group_id).await[0].deleted_at.is_some());
}
