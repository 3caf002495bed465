//! Lists at and past their bounds (issue 10, "the service boundary"; docs/runtime.md,
//! "Errors"): every repeated field of a request is refused on its length before any of its
//! entries is read, so a request of millions of ids costs a comparison, and a refusal lists
//! at most `MAX_REPORTED_VIOLATIONS` violations plus one counting the rest, so its trailers
//! stay a few KiB whatever the request held (grpcio refuses metadata past 16 KiB).
//!
//! Each field is checked the same way ([`check_list`]): a list at the limit is accepted; at
//! the limit + 1, at 1,000× the limit and at about 4 MiB (the decode limit) it is refused
//! with one violation naming the field, the limit and the length; a list of bad entries
//! gives a capped list of violations. No assertion is about time: the size and count of
//! what comes back show that the entries past the limit were never looked at. (The time
//! each big refusal took is printed, for the record; `--no-capture` shows it.)
//!
//! A request past the decode limit itself (4 MiB) is RESOURCE_EXHAUSTED
//! ([`over_size_requests_are_resource_exhausted`]).
//!
//! Requests are parsed before storage is touched, so these run on memory only.

use std::future::Future;
use std::time::Instant;

use fanfare_core::layers::message_size::MESSAGE_SIZE_SUBJECT;
use fanfare_core::server::MAX_DECODING_MESSAGE_SIZE;
use fanfare_core::validation::{MAX_MESSAGE_BYTES, MAX_REPORTED_VIOLATIONS, OMITTED_FIELD};
use fanfare_proto::common::v1 as common;
use fanfare_proto::common::v1::GroupKind;
use fanfare_proto::fanout::v1 as fanout_pb;
use fanfare_proto::groups::v1 as groups_pb;
use fanfare_proto::messages::v1 as messages_pb;
use fanfare_testkit::{Storage, as_user};
use fanfare_tests::expect_code;
use fanfare_tests::groups::expect_quota_failure;
use tonic::codegen::http::HeaderMap;
use tonic::{Code, Request, Status};
use tonic_types::StatusExt;
use uuid::Uuid;

/// The most an error may add to a response's trailers, well under grpcio's 16 KiB.
const TRAILER_BUDGET: usize = 8 * 1024;
/// Entries of about 4 MiB when each takes one byte on the wire (a packed zero id).
const FOUR_MIB_OF_ZERO_IDS: usize = 4_000_000;
/// Entries of about 4 MiB when each takes two bytes (an empty string or message).
const FOUR_MIB_OF_EMPTY_ENTRIES: usize = 2_000_000;

/// One repeated field: how to call its RPC with a list, and what its entries look like.
struct List<E, G, C> {
    /// The field a refusal on length names.
    field: &'static str,
    /// The name of its entries in violations (`field[index]…`); usually `field`.
    entries: &'static str,
    /// The most entries accepted.
    limit: usize,
    /// `n` good entries.
    good: G,
    /// A bad entry, the cheapest on the wire (a zero id, an empty message).
    bad: E,
    /// How many bad entries make a request of about 4 MiB, where that is cheap to build.
    four_mib: Option<usize>,
    /// Whether a list at the limit is answered OK; otherwise only "not INVALID_ARGUMENT"
    /// (when the call then needs a service the test does not run).
    ok_at_limit: bool,
    /// Calls the RPC with the list.
    call: C,
}

/// Checks one list field end to end (see the module's doc).
async fn check_list<E, G, C, F>(mut list: List<E, G, C>)
where
    E: Clone,
    G: Fn(usize) -> Vec<E>,
    C: FnMut(Vec<E>) -> F,
    F: Future<Output = Result<(), Status>>,
{
    let List { field, limit, .. } = list;
    let at_limit = (list.call)((list.good)(limit)).await;
    match at_limit {
        Ok(()) => {}
        Err(status) if !list.ok_at_limit && status.code() != Code::InvalidArgument => {}
        Err(status) => panic!("{field}: a list of {limit} is accepted, got {status:?}"),
    }

    let one_too_many = (list.call)((list.good)(limit + 1)).await;
    expect_length_refusal(one_too_many, field, limit, limit + 1);

    let mut lengths = vec![limit * 1_000];
    lengths.extend(list.four_mib);
    for length in lengths {
        let started = Instant::now();
        let refused = (list.call)(vec![list.bad.clone(); length]).await;
        let elapsed = started.elapsed();
        let status = expect_length_refusal(refused, field, limit, length);
        eprintln!("{field}: {length} bad entries refused in {elapsed:?}, {} bytes of trailers", trailer_bytes(&status));
    }

    // Bad entries up to the limit are each named, up to the cap.
    let refused = (list.call)(vec![list.bad.clone(); limit]).await;
    expect_capped(refused, list.entries);

    // 1,000 bad entries: past a smaller limit, one violation; within it, a capped list.
    let refused = (list.call)(vec![list.bad.clone(); 1_000]).await;
    if 1_000 > limit {
        expect_length_refusal(refused, field, limit, 1_000);
    } else {
        let violations = expect_capped(refused, list.entries);
        assert_eq!(violations.len(), MAX_REPORTED_VIOLATIONS + 1, "{field}: {violations:?}");
        let summary = &violations[MAX_REPORTED_VIOLATIONS];
        assert!(summary.1.starts_with(&format!("and {} more", 1_000 - MAX_REPORTED_VIOLATIONS)), "{summary:?}");
    }
}

/// The bytes a status takes as trailers: `grpc-status`, `grpc-message` (percent-encoded),
/// `grpc-status-details-bin` (base64) and any other metadata, names and values.
fn trailer_bytes(status: &Status) -> usize {
    let mut trailers = HeaderMap::new();
    status.add_header(&mut trailers).expect("a status that encodes");
    trailers.iter().map(|(name, value)| name.as_str().len() + value.len()).sum()
}

/// Asserts `INVALID_ARGUMENT` of a bounded size, returning its (field, description) pairs.
#[track_caller]
fn small_refusal<T: std::fmt::Debug>(result: Result<T, Status>) -> (Status, Vec<(String, String)>) {
    let status = expect_code(result, Code::InvalidArgument);
    let size = status.details().len() + status.message().len();
    assert!(size < TRAILER_BUDGET, "message + details are {size} bytes: {}", status.message());
    let encoded = trailer_bytes(&status);
    assert!(encoded < TRAILER_BUDGET, "{encoded} bytes of trailers: {}", status.message());
    let violations = status
        .get_error_details()
        .bad_request()
        .map(|bad_request| {
            let pairs = bad_request.field_violations.iter();
            pairs.map(|violation| (violation.field.clone(), violation.description.clone())).collect()
        })
        .unwrap_or_default();
    (status, violations)
}

/// Asserts a list refused on its length alone: one violation, of `field`, naming the limit
/// and the length received.
#[track_caller]
fn expect_length_refusal<T: std::fmt::Debug>(
    result: Result<T, Status>,
    field: &str,
    limit: usize,
    length: usize,
) -> Status {
    let (status, violations) = small_refusal(result);
    let [(named, description)] = violations.as_slice() else {
        panic!("{field} of {length}: one violation, got {} ({})", violations.len(), status.message());
    };
    assert_eq!(named, field, "{description}");
    assert!(description.contains(&limit.to_string()), "{field}: the limit is named: {description}");
    assert!(description.contains(&format!("got {length}")), "{field}: the length is named: {description}");
    status
}

/// Asserts a refusal naming bad entries of `entries`, at most `MAX_REPORTED_VIOLATIONS`
/// of them and then one counting the rest.
#[track_caller]
fn expect_capped<T: std::fmt::Debug>(result: Result<T, Status>, entries: &str) -> Vec<(String, String)> {
    let (status, violations) = small_refusal(result);
    assert!(violations.len() <= MAX_REPORTED_VIOLATIONS + 1, "{entries}: {} violations", violations.len());
    let (last, named) = violations.split_last().expect("at least one violation");
    let named = if violations.len() == MAX_REPORTED_VIOLATIONS + 1 {
        assert_eq!(last.0, OMITTED_FIELD, "the last violation counts the rest: {last:?}");
        named
    } else {
        &violations[..]
    };
    for (field, _) in named {
        assert!(field.starts_with(&format!("{entries}[")), "an entry of {entries}: {field}");
    }
    assert!(status.message().len() <= MAX_MESSAGE_BYTES, "a short message: {}", status.message());
    violations
}

#[tokio::test]
async fn groups_lists_are_bounded() {
    let (_service, client) = fanfare_tests::groups::start(Storage::Memory).await;
    let limit = fanfare_groups::config::DEFAULT_MAX_BATCH_SIZE;
    let ids = |count: usize| (1..).take(count).collect::<Vec<i64>>();

    let mut batch = client.clone();
    check_list(List {
        field: "group_ids",
        entries: "group_ids",
        limit,
        good: ids,
        bad: 0,
        four_mib: Some(FOUR_MIB_OF_ZERO_IDS),
        ok_at_limit: true,
        call: |group_ids| {
            let mut client = batch.clone();
            async move {
                let request = groups_pb::BatchGetGroupsRequest { group_ids };
                client.batch_get_groups(as_user(1, request)).await.map(drop)
            }
        },
    })
    .await;

    let group_id = fanfare_tests::groups::create(&mut batch, 1, GroupKind::Community).await.group_id;
    check_list(List {
        field: "user_ids",
        entries: "user_ids",
        limit,
        good: |count| (2..).take(count).collect(),
        bad: 0,
        four_mib: Some(FOUR_MIB_OF_ZERO_IDS),
        ok_at_limit: true,
        call: |user_ids| {
            let mut client = client.clone();
            async move {
                let request = groups_pb::AddMembersRequest { group_id, user_ids };
                client.add_members(as_user(1, request)).await.map(drop)
            }
        },
    })
    .await;
    assert_eq!(fanfare_tests::groups::get(&mut batch, 1, group_id).await.member_count, 1 + limit as i64);
}

#[tokio::test]
async fn fanout_lists_are_bounded() {
    const MAX_GROUPS: usize = 100;
    let (_service, client) = fanfare_tests::fanout::start_with(Storage::Memory, |config| {
        config.live.max_groups_per_stream = MAX_GROUPS;
    })
    .await;
    let limit = fanfare_fanout::config::DEFAULT_MAX_BATCH_SIZE;
    let ids = |count: usize| (1..).take(count).collect::<Vec<i64>>();

    check_list(List {
        field: "user_ids",
        entries: "user_ids",
        limit,
        good: ids,
        bad: 0,
        four_mib: Some(FOUR_MIB_OF_ZERO_IDS),
        ok_at_limit: true,
        call: |user_ids| {
            let mut client = client.clone();
            async move {
                let request = fanout_pb::GetFollowCountsRequest { user_ids };
                client.get_follow_counts(as_user(1, request)).await.map(drop)
            }
        },
    })
    .await;

    check_list(List {
        field: "creator_user_ids",
        entries: "creator_user_ids",
        limit,
        good: ids,
        bad: 0,
        four_mib: Some(FOUR_MIB_OF_ZERO_IDS),
        ok_at_limit: true,
        call: |creator_user_ids| {
            let mut client = client.clone();
            async move {
                let request = fanout_pb::CheckFollowsRequest { follower_user_id: 0, creator_user_ids };
                client.check_follows(as_user(1, request)).await.map(drop)
            }
        },
    })
    .await;

    // No groups service runs here, so a well-formed Subscribe goes on to fail UNAVAILABLE.
    check_list(List {
        field: "positions",
        entries: "positions",
        limit: MAX_GROUPS,
        good: |count| {
            (1..)
                .take(count)
                .map(|group_id| fanout_pb::GroupPosition { group_id, event_seq: 0, entry_token: 0 })
                .collect()
        },
        bad: fanout_pb::GroupPosition::default(),
        four_mib: Some(FOUR_MIB_OF_EMPTY_ENTRIES),
        ok_at_limit: false,
        call: |positions| {
            let mut client = client.clone();
            async move {
                let request = fanout_pb::SubscribeRequest { positions, cursor: String::new() };
                client.subscribe(as_user(1, request)).await.map(drop)
            }
        },
    })
    .await;

    // A cursor longer than any stream of MAX_GROUPS groups hands out is refused unread.
    let mut subscribe = client.clone();
    let cursor = format!("s1{}", "0".repeat(4_000_000));
    let request = fanout_pb::SubscribeRequest { positions: Vec::new(), cursor };
    let (_, violations) = small_refusal(subscribe.subscribe(as_user(1, request)).await.map(drop));
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert_eq!(violations[0].0, "cursor");
}

/// Mentions and attachments: SendMessage, each with its own idempotency key.
#[tokio::test]
async fn send_message_lists_are_bounded() {
    let mut fixture =
        fanfare_tests::messages::start_with(Storage::Memory, |config| config.limits.user_sends_per_second = 0).await;
    let group_id = fixture.group(GroupKind::Community, 1, &[2]).await;
    let client = fixture.messages.clone();
    let send = |request: messages_pb::SendMessageRequest| {
        let mut client = client.clone();
        async move {
            let request = messages_pb::SendMessageRequest {
                group_id,
                client_message_id: Uuid::now_v7().to_string(),
                text: "hello".to_owned(),
                ..request
            };
            client.send_message(as_user(2, request)).await.map(drop)
        }
    };

    check_list(List {
        field: "mentioned_user_ids",
        entries: "mentioned_user_ids",
        limit: fanfare_messages::domain::MAX_MENTIONS,
        good: |count| (1..).take(count).collect(),
        bad: 0,
        four_mib: Some(FOUR_MIB_OF_ZERO_IDS),
        ok_at_limit: true,
        call: |mentioned_user_ids| send(messages_pb::SendMessageRequest { mentioned_user_ids, ..Default::default() }),
    })
    .await;

    check_list(List {
        field: "attachments",
        entries: "attachments",
        limit: fanfare_messages::domain::MAX_ATTACHMENTS,
        good: |count| {
            let attachment = |index: usize| common::Attachment {
                media_id: format!("media-{index}"),
                mime_type: "image/jpeg".to_owned(),
                size_bytes: 1_024,
                ..Default::default()
            };
            (0..count).map(attachment).collect()
        },
        bad: common::Attachment::default(),
        four_mib: None,
        ok_at_limit: true,
        call: |attachments| send(messages_pb::SendMessageRequest { attachments, ..Default::default() }),
    })
    .await;
}

/// GetMessages (ids and seqs count together), GetUnreadCounts, AppendSystemUpdates.
#[tokio::test]
async fn messages_read_and_relay_lists_are_bounded() {
    let mut fixture = fanfare_tests::messages::start(Storage::Memory).await;
    let group_id = fixture.group(GroupKind::Community, 1, &[2]).await;
    let client = fixture.messages.clone();
    const MAX_GET_MESSAGES: usize = 100;

    check_list(List {
        field: "message_ids",
        entries: "message_seqs",
        limit: MAX_GET_MESSAGES,
        good: |count| (1..).take(count).collect(),
        bad: 0,
        four_mib: Some(FOUR_MIB_OF_ZERO_IDS),
        ok_at_limit: true,
        call: |message_seqs| {
            let mut client = client.clone();
            async move {
                let request = messages_pb::GetMessagesRequest { group_id, message_ids: Vec::new(), message_seqs };
                client.get_messages(as_user(2, request)).await.map(drop)
            }
        },
    })
    .await;

    check_list(List {
        field: "message_ids",
        entries: "message_ids",
        limit: MAX_GET_MESSAGES,
        good: |count| (0..count).map(|_| Uuid::now_v7().to_string()).collect(),
        bad: String::new(),
        four_mib: Some(FOUR_MIB_OF_EMPTY_ENTRIES),
        ok_at_limit: true,
        call: |message_ids| {
            let mut client = client.clone();
            async move {
                let request = messages_pb::GetMessagesRequest { group_id, message_ids, message_seqs: Vec::new() };
                client.get_messages(as_user(2, request)).await.map(drop)
            }
        },
    })
    .await;

    // The caller must belong to every group named: one group, named up to the limit, is
    // answered once (repeats are dropped after the length is checked).
    let unread = |group_ids: Vec<i64>| {
        let mut client = client.clone();
        async move { client.get_unread_counts(as_user(2, messages_pb::GetUnreadCountsRequest { group_ids })).await }
    };
    let answered = unread(vec![group_id; 1_000]).await.expect("1,000 repeats of one group").into_inner();
    assert_eq!(answered.counts.len(), 1, "a repeated group is answered once");
    check_list(List {
        field: "group_ids",
        entries: "group_ids",
        limit: 1_000,
        good: |count| vec![group_id; count],
        bad: 0,
        four_mib: Some(FOUR_MIB_OF_ZERO_IDS),
        ok_at_limit: true,
        call: |group_ids| {
            let call = unread(group_ids);
            async move { call.await.map(drop) }
        },
    })
    .await;

    check_list(List {
        field: "events",
        entries: "events",
        limit: 500,
        good: |count| {
            (0..count)
                .map(|index| messages_pb::SystemEvent {
                    outbox_id: 9_000_000 + index as i64,
                    event: Some(common::GroupEvent {
                        group_id,
                        actor_user_id: 1,
                        occurred_at: None,
                        change: Some(common::group_event::Change::MemberUnmuted(common::MemberUnmuted { user_id: 2 })),
                    }),
                })
                .collect()
        },
        bad: messages_pb::SystemEvent::default(),
        four_mib: None,
        ok_at_limit: true,
        call: |events| {
            let mut client = client.clone();
            async move {
                let request = Request::new(messages_pb::AppendSystemUpdatesRequest { events });
                client.append_system_updates(request).await.map(drop)
            }
        },
    })
    .await;
}

/// A request message past the decode limit is refused before anything reads it: with
/// RESOURCE_EXHAUSTED and a `QuotaFailure` naming the limit (as gRPC's other implementations
/// answer; tonic alone says OUT_OF_RANGE), and the service answers the next call as usual.
#[tokio::test]
async fn over_size_requests_are_resource_exhausted() {
    let over_size = || vec![0_i64; MAX_DECODING_MESSAGE_SIZE + 1];
    let expect_too_large = |result: Result<(), Status>, method: &str| {
        let status = expect_quota_failure(result);
        let quota = status.get_error_details().quota_failure().cloned().expect("a quota failure");
        assert_eq!(quota.violations[0].subject, MESSAGE_SIZE_SUBJECT, "{method}");
        assert!(status.message().contains(&MAX_DECODING_MESSAGE_SIZE.to_string()), "{method}: {}", status.message());
    };

    let (_groups, mut groups) = fanfare_tests::groups::start(Storage::Memory).await;
    let request = groups_pb::BatchGetGroupsRequest { group_ids: over_size() };
    expect_too_large(groups.batch_get_groups(as_user(1, request)).await.map(drop), "BatchGetGroups");
    let request = groups_pb::BatchGetGroupsRequest { group_ids: vec![1] };
    groups.batch_get_groups(as_user(1, request)).await.expect("the next call is answered");

    let (_fanout, mut fanout) = fanfare_tests::fanout::start(Storage::Memory).await;
    let request = fanout_pb::GetFollowCountsRequest { user_ids: over_size() };
    expect_too_large(fanout.get_follow_counts(as_user(1, request)).await.map(drop), "GetFollowCounts");
    let request = fanout_pb::SubscribeRequest { positions: Vec::new(), cursor: "s".repeat(MAX_DECODING_MESSAGE_SIZE) };
    expect_too_large(fanout.subscribe(as_user(1, request)).await.map(drop), "Subscribe");
    fanfare_tests::fanout::counts(&mut fanout, 1).await;

    let mut fixture = fanfare_tests::messages::start(Storage::Memory).await;
    let request = messages_pb::GetUnreadCountsRequest { group_ids: over_size() };
    expect_too_large(fixture.messages.get_unread_counts(as_user(1, request)).await.map(drop), "GetUnreadCounts");
    let request = messages_pb::GetUnreadCountsRequest { group_ids: Vec::new() };
    fixture.messages.get_unread_counts(as_user(1, request)).await.expect("the next call is answered");
}
