//! Bad input, part one: the acting user on every call, and every field of SendMessage. Each
//! refusal is INVALID_ARGUMENT naming the field (UNAUTHENTICATED for a missing user) and
//! writes nothing: history and log are unchanged afterwards.

use fanfare_core::identity::USER_ID_HEADER;
use fanfare_proto::common::v1::{Attachment, GroupKind};
use fanfare_proto::messages::v1 as pb;
use fanfare_testkit::{Storage, as_user};
use fanfare_tests::groups::expect_exact_violations;
use fanfare_tests::messages::{Client, Fixture, send_ok, snapshot, start_with, text};
use fanfare_tests::{expect_code, expect_field_violation, on_every_storage};
use tonic::{Code, Request, Status};

on_every_storage!(
    every_call_but_the_internal_one_needs_a_well_formed_user,
    send_message_names_each_bad_field,
    send_message_names_each_bad_attachment_field,
    send_message_reports_every_bad_field_at_once,
);

/// Longest text in these tests, so the limit is visibly configuration.
const MAX_TEXT: usize = 20;

async fn fixture(storage: Storage) -> (Fixture, i64) {
    let mut fixture = start_with(storage, |config| config.limits.max_text_chars = MAX_TEXT).await;
    let group_id = fixture.group(GroupKind::Community, 1, &[2]).await;
    send_ok(&mut fixture.messages, 1, group_id, "seed", "a first message").await;
    (fixture, group_id)
}

/// A request with the user header set to `header` (absent for `None`), any text allowed.
fn with_header<T>(header: Option<&str>, message: T) -> Request<T> {
    let mut request = Request::new(message);
    if let Some(value) = header {
        request.metadata_mut().insert(USER_ID_HEADER, value.parse().expect("ASCII metadata"));
    }
    request
}

/// Calls each RPC that acts as a user, with valid bodies and the given user header.
async fn call_every_user_rpc(client: &mut Client, header: Option<&str>, group_id: i64) -> Vec<(&'static str, Status)> {
    let mut refused = Vec::new();
    let mut outcome = |name: &'static str, result: Result<(), Status>| match result {
        Ok(()) => panic!("{name} succeeded without a valid user"),
        Err(status) => refused.push((name, status)),
    };
    let seq = pb::DeleteMessageRequest { group_id, message_seq: 1 };
    outcome("SendMessage", client.send_message(with_header(header, text(group_id, "k", "hi"))).await.map(drop));
    let edit = pb::EditMessageRequest { group_id, message_seq: 1, text: "edited".into() };
    outcome("EditMessage", client.edit_message(with_header(header, edit)).await.map(drop));
    outcome("DeleteMessage", client.delete_message(with_header(header, seq)).await.map(drop));
    let purge = pb::PurgeUserMessagesRequest { group_id, user_id: 2, since: None };
    outcome("PurgeUserMessages", client.purge_user_messages(with_header(header, purge)).await.map(drop));
    let add = pb::AddReactionRequest { group_id, message_seq: 1, emoji: "👍".into() };
    outcome("AddReaction", client.add_reaction(with_header(header, add)).await.map(drop));
    let remove = pb::RemoveReactionRequest { group_id, message_seq: 1, emoji: "👍".into() };
    outcome("RemoveReaction", client.remove_reaction(with_header(header, remove)).await.map(drop));
    let pin = pb::PinMessageRequest { group_id, message_seq: 1 };
    outcome("PinMessage", client.pin_message(with_header(header, pin)).await.map(drop));
    let unpin = pb::UnpinMessageRequest { group_id, message_seq: 1 };
    outcome("UnpinMessage", client.unpin_message(with_header(header, unpin)).await.map(drop));
    let list = pb::ListMessagesRequest { group_id, direction: pb::Direction::Forward as i32, ..Default::default() };
    outcome("ListMessages", client.list_messages(with_header(header, list)).await.map(drop));
    let get = pb::GetMessagesRequest { group_id, message_seqs: vec![1], ..Default::default() };
    outcome("GetMessages", client.get_messages(with_header(header, get)).await.map(drop));
    let updates = pb::GetUpdatesRequest { group_id, ..Default::default() };
    outcome("GetUpdates", client.get_updates(with_header(header, updates)).await.map(drop));
    let mark = pb::MarkReadRequest { group_id, message_seq: 1 };
    outcome("MarkRead", client.mark_read(with_header(header, mark)).await.map(drop));
    let counts = pb::GetUnreadCountsRequest { group_ids: vec![group_id] };
    outcome("GetUnreadCounts", client.get_unread_counts(with_header(header, counts)).await.map(drop));
    refused
}

async fn every_call_but_the_internal_one_needs_a_well_formed_user(storage: Storage) {
    let (mut fixture, group_id) = fixture(storage).await;
    let client = &mut fixture.messages;
    let before = snapshot(client, 1, group_id).await;

    let anonymous = call_every_user_rpc(client, None, group_id).await;
    assert_eq!(anonymous.len(), 13);
    for (name, status) in anonymous {
        assert_eq!(status.code(), Code::Unauthenticated, "{name}: {status:?}");
        assert!(status.message().contains(USER_ID_HEADER), "{name} names the header: {}", status.message());
    }
    for header in ["", "abc", "0", "-3", "1.5", "99999999999999999999"] {
        for (name, status) in call_every_user_rpc(client, Some(header), group_id).await {
            assert_eq!(status.code(), Code::InvalidArgument, "{name} with {header:?}: {status:?}");
        }
    }
    assert_eq!(snapshot(client, 1, group_id).await, before, "no refused call wrote anything");
}

async fn send_message_names_each_bad_field(storage: Storage) {
    let (mut fixture, group_id) = fixture(storage).await;
    let client = &mut fixture.messages;
    let before = snapshot(client, 1, group_id).await;
    let valid = || text(group_id, "key", "hello");
    let cases: Vec<(&str, pb::SendMessageRequest)> = vec![
        ("group_id", pb::SendMessageRequest { group_id: 0, ..valid() }),
        ("group_id", pb::SendMessageRequest { group_id: -7, ..valid() }),
        ("client_message_id", pb::SendMessageRequest { client_message_id: String::new(), ..valid() }),
        ("client_message_id", pb::SendMessageRequest { client_message_id: "k".repeat(129), ..valid() }),
        ("client_message_id", pb::SendMessageRequest { client_message_id: "   ".into(), ..valid() }),
        ("client_message_id", pb::SendMessageRequest { client_message_id: "k\u{7}".into(), ..valid() }),
        ("text", pb::SendMessageRequest { text: "x".repeat(MAX_TEXT + 1), ..valid() }),
        ("text", pb::SendMessageRequest { text: "bell\u{7}".into(), ..valid() }),
        ("text", pb::SendMessageRequest { text: String::new(), ..valid() }),
        ("reply_to_message_seq", pb::SendMessageRequest { reply_to_message_seq: -1, ..valid() }),
        ("mentioned_user_ids", pb::SendMessageRequest { mentioned_user_ids: (1..=51).collect(), ..valid() }),
        ("mentioned_user_ids[1]", pb::SendMessageRequest { mentioned_user_ids: vec![2, -4], ..valid() }),
        ("mentioned_user_ids[0]", pb::SendMessageRequest { mentioned_user_ids: vec![0], ..valid() }),
    ];
    for (field, request) in cases {
        let result = client.send_message(as_user(1, request.clone())).await;
        let status = expect_field_violation(result, field);
        assert!(status.message().contains(field), "the message names {field}: {}", status.message());
    }

    // At the limits everything is accepted.
    let longest = pb::SendMessageRequest {
        client_message_id: "k".repeat(128),
        text: "é".repeat(MAX_TEXT),
        mentioned_user_ids: (1..=50).collect(),
        ..valid()
    };
    let accepted = client.send_message(as_user(1, longest)).await.expect("limits are inclusive").into_inner();
    let mut after = before.clone();
    after.messages.push(accepted.message.expect("the message"));
    let current = snapshot(client, 1, group_id).await;
    assert_eq!(current.messages, after.messages, "only the valid message was written");
    assert_eq!(current.latest_event_seq, before.latest_event_seq + 1);
}

fn attachment() -> Attachment {
    Attachment {
        media_id: "media".into(),
        mime_type: "video/mp4".into(),
        size_bytes: 10,
        width: 0,
        height: 0,
        duration_ms: 0,
    }
}

async fn send_message_names_each_bad_attachment_field(storage: Storage) {
    let (mut fixture, group_id) = fixture(storage).await;
    let client = &mut fixture.messages;
    let before = snapshot(client, 1, group_id).await;
    let cases: Vec<(&str, Attachment)> = vec![
        ("media_id", Attachment { media_id: String::new(), ..attachment() }),
        ("media_id", Attachment { media_id: "m".repeat(257), ..attachment() }),
        ("mime_type", Attachment { mime_type: String::new(), ..attachment() }),
        ("mime_type", Attachment { mime_type: "jpeg".into(), ..attachment() }),
        ("mime_type", Attachment { mime_type: "image/".into(), ..attachment() }),
        ("mime_type", Attachment { mime_type: "image/ png".into(), ..attachment() }),
        ("mime_type", Attachment { mime_type: format!("image/{}", "x".repeat(128)), ..attachment() }),
        ("size_bytes", Attachment { size_bytes: 0, ..attachment() }),
        ("size_bytes", Attachment { size_bytes: -10, ..attachment() }),
        ("width", Attachment { width: -1, ..attachment() }),
        ("height", Attachment { height: -1, ..attachment() }),
        ("duration_ms", Attachment { duration_ms: -1, ..attachment() }),
    ];
    for (sub_field, bad) in cases {
        // The bad attachment second, so the index in the field name is visibly its own.
        let request = pb::SendMessageRequest { attachments: vec![attachment(), bad], ..text(group_id, "k", "") };
        expect_field_violation(client.send_message(as_user(1, request)).await, &format!("attachments[1].{sub_field}"));
    }
    let too_many = pb::SendMessageRequest { attachments: vec![attachment(); 11], ..text(group_id, "k", "") };
    expect_field_violation(client.send_message(as_user(1, too_many)).await, "attachments");
    assert_eq!(snapshot(client, 1, group_id).await, before, "no refused send wrote anything");

    let media_only = pb::SendMessageRequest { attachments: vec![attachment(); 10], ..text(group_id, "k", "") };
    let sent = client.send_message(as_user(1, media_only)).await.expect("attachments alone make a message");
    assert_eq!(sent.into_inner().message.expect("the message").attachments.len(), 10);
}

async fn send_message_reports_every_bad_field_at_once(storage: Storage) {
    let (mut fixture, group_id) = fixture(storage).await;
    let client = &mut fixture.messages;
    let before = snapshot(client, 1, group_id).await;
    let request = pb::SendMessageRequest {
        group_id: 0,
        client_message_id: String::new(),
        text: "x".repeat(MAX_TEXT + 5),
        attachments: vec![Attachment { size_bytes: 0, ..attachment() }],
        reply_to_message_seq: -2,
        mentioned_user_ids: vec![-1],
        mentions_all: false,
    };
    expect_exact_violations(
        client.send_message(as_user(1, request)).await,
        &[
            "group_id",
            "client_message_id",
            "text",
            "attachments[0].size_bytes",
            "reply_to_message_seq",
            "mentioned_user_ids[0]",
        ],
    );
    // Input is checked before anything else: even a stranger's bad request is about its fields.
    let stranger = pb::SendMessageRequest { group_id, ..text(group_id, "", "hi") };
    expect_field_violation(client.send_message(as_user(9, stranger)).await, "client_message_id");
    let unknown_group = text(987_654, "k", "hi");
    expect_code(client.send_message(as_user(1, unknown_group)).await, Code::NotFound);
    assert_eq!(snapshot(client, 1, group_id).await, before);
}
