//! The conformance suite: what every [`MessageStore`] must do, written once as async test
//! bodies and stamped out per implementation with [`message_store_conformance_tests!`].
//!
//! This is test support compiled into the library (so integration tests and the testkit
//! can use it without feature flags): its functions panic through `assert!` when a store
//! misbehaves, and must never be called outside tests. Each test expects an empty store.
//! Times are fixed (see [`at`]), never read from the clock, so windows and leases are
//! deterministic.
//!
//! [`message_store_conformance_tests!`]: crate::message_store_conformance_tests

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use fanfare_core::ids::{GroupId, UserId};
use fanfare_core::paging::PageSize;
use fanfare_core::time::to_timestamp;
use fanfare_proto::common::v1 as common;
use fanfare_proto::common::v1::update::Change;
use futures::future::join_all;
use prost::Message as _;
use uuid::Uuid;

use super::{
    Applied, Committed, Direction, LogWrite, MemoryMessageStore, MessageStore, PostgresMessageStore, WriteError,
};
use crate::domain::updates::message_to_proto;
use crate::domain::{
    Attachment, ClientMessageId, Content, Emoji, LogPosition, MAX_PURGED_PER_UPDATE, Message, MessageText, NewMessage,
    ReactionCount, StoredUpdate, Unread,
};

/// Something that holds a store under test (and whatever must live as long as it, such
/// as a throwaway database).
pub trait StoreFixture: Send + Sync {
    /// The store under test.
    fn store(&self) -> &dyn MessageStore;
}

impl StoreFixture for MemoryMessageStore {
    fn store(&self) -> &dyn MessageStore {
        self
    }
}

impl StoreFixture for PostgresMessageStore {
    fn store(&self) -> &dyn MessageStore {
        self
    }
}

/// Stamps out one `#[tokio::test]` per conformance test. The argument is an expression
/// evaluated afresh for each test, yielding a future of a [`StoreFixture`] over an empty
/// store, e.g. `async { MemoryMessageStore::new() }`.
///
/// [`StoreFixture`]: crate::store::conformance::StoreFixture
#[macro_export]
macro_rules! message_store_conformance_tests {
    ($factory:expr) => {
        $crate::message_store_conformance_tests!(@each $factory;
            posts_take_gapless_seqs_and_read_back,
            content_round_trips_through_the_store_and_the_log,
            a_retry_with_the_same_content_returns_the_original,
            a_retry_with_other_content_is_a_conflict,
            the_same_key_twice_in_one_batch_makes_one_message,
            a_mixed_batch_is_gapless_and_refused_writes_take_no_seq,
            concurrent_posts_to_one_group_are_gapless,
            concurrent_batches_over_several_groups_are_gapless_per_group,
            slow_mode_spaces_a_senders_posts,
            replies_need_an_existing_target,
            edits_need_the_sender_a_live_message_and_the_window,
            deletes_make_tombstones_once_and_moderators_may_delete,
            purge_tombstones_a_users_messages_since_a_time,
            a_large_purge_is_listed_by_bounded_updates,
            reactions_add_and_remove_idempotently,
            reactions_are_limited_to_distinct_emojis,
            reaction_updates_are_appended_only_when_asked,
            pins_toggle_once_and_respect_the_limit,
            deleted_messages_refuse_edits_reactions_and_pins,
            missing_messages_are_not_found_by_every_kind,
            system_events_are_idempotent_on_the_source_and_outbox_id,
            list_messages_pages_both_ways,
            list_messages_skips_messages_before_not_before,
            get_messages_skip_unknown_seqs_and_ids,
            get_updates_pages_the_log_and_reports_the_position,
            log_positions_keep_the_order_asked,
            mark_read_never_goes_backwards_and_is_clamped,
            unread_counts_count_messages_and_mentions,
            a_batch_returns_what_it_appended_and_leaves_it_unpublished,
            unpublished_updates_page_in_order_and_acks_remove_them,
            orphaned_lanes_and_their_leases,
            prune_drops_old_updates_and_raises_the_oldest_retained,
            prune_keeps_updates_still_waiting_in_the_outbox,
            an_empty_batch_writes_nothing,
            ping_succeeds,
        );
    };
    (@each $factory:expr; $($test:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() {
                let fixture = $factory.await;
                $crate::store::conformance::$test(
                    $crate::store::conformance::StoreFixture::store(&fixture),
                )
                .await;
            }
        )+
    };
}

// ---------------------------------------------------------------------------------------
// Helpers

/// A fixed point in time plus `seconds`; tests never read the clock.
pub fn at(seconds: i64) -> DateTime<Utc> {
    // 2030-01-01T00:00:00Z
    let epoch = DateTime::from_timestamp(1_893_456_000, 0).unwrap_or(DateTime::<Utc>::MIN_UTC);
    epoch + chrono::Duration::seconds(seconds)
}

/// A user id.
pub fn user(id: i64) -> UserId {
    UserId::from_trusted(id)
}

/// A group id.
pub fn group(id: i64) -> GroupId {
    GroupId::from_trusted(id)
}

/// An emoji.
pub fn emoji(raw: &str) -> Emoji {
    Emoji::from_trusted(raw.to_owned())
}

/// Text-only content.
pub fn text(raw: &str) -> Content {
    Content { text: MessageText::from_trusted(raw.to_owned()), ..Content::default() }
}

/// A message of `sender` to `group` under idempotency key `key`.
pub fn new_message(group: GroupId, sender: UserId, key: &str, content: Content) -> NewMessage {
    NewMessage { group_id: group, sender, client_message_id: ClientMessageId::from_trusted(key.to_owned()), content }
}

/// A post without slow mode.
pub fn post(group: GroupId, sender: UserId, key: &str, content: Content) -> LogWrite {
    LogWrite::Post { message: new_message(group, sender, key, content), slow_mode: None }
}

/// Applies one write.
pub async fn apply_one(store: &dyn MessageStore, write: LogWrite, now: DateTime<Utc>) -> Result<Applied, WriteError> {
    let mut outcomes = store.apply(vec![write], now).await.expect("apply a write").outcomes;
    assert_eq!(outcomes.len(), 1, "one outcome per write");
    outcomes.remove(0)
}

/// The message of a post that must be new.
fn new_post(outcome: Result<Applied, WriteError>) -> Message {
    match outcome {
        Ok(Applied::Posted { message, duplicate: false }) => message,
        other => panic!("expected a new post, got {other:?}"),
    }
}

/// Posts text and returns the new message.
async fn send(store: &dyn MessageStore, to: GroupId, sender: UserId, key: &str, now: DateTime<Utc>) -> Message {
    new_post(apply_one(store, post(to, sender, key, text(key)), now).await)
}

/// Every update of a group's log, decoded, checked to be numbered 1, 2, 3, …
async fn log_of(store: &dyn MessageStore, of: GroupId) -> Vec<common::Update> {
    let read = store.get_updates(of, 0, PageSize::new(1_000)).await.expect("read the log");
    let updates: Vec<common::Update> = read
        .updates
        .iter()
        .map(|stored| {
            let update = common::Update::decode(stored.payload.as_ref()).expect("a decodable update");
            assert_eq!((update.group_id, update.event_seq), (stored.group_id.get(), stored.event_seq));
            update
        })
        .collect();
    let first = read.position.oldest_retained_event_seq;
    let seqs: Vec<i64> = updates.iter().map(|update| update.event_seq).collect();
    assert_eq!(seqs, (first..=read.position.last_event_seq).collect::<Vec<_>>(), "a gapless log");
    // Each entry has a token and links to its predecessor's; the log's position names the last.
    assert!(updates.iter().all(|update| update.entry_token != 0), "every entry has a token");
    for pair in updates.windows(2) {
        assert_eq!(
            pair[1].previous_entry_token, pair[0].entry_token,
            "entry {} links to its predecessor",
            pair[1].event_seq
        );
    }
    if first == 1
        && let Some(start) = updates.first()
    {
        assert_eq!(start.previous_entry_token, 0, "the first entry has no predecessor");
    }
    assert_eq!(read.position.last_entry_token, updates.last().map_or(0, |last| last.entry_token));
    updates
}

/// The entry token of `of`'s latest log entry, as the entry carries it.
async fn latest_token(store: &dyn MessageStore, of: GroupId) -> u64 {
    log_of(store, of).await.last().map_or(0, |update| update.entry_token)
}

/// The kind of each change, for compact assertions.
fn kinds(updates: &[common::Update]) -> Vec<&'static str> {
    updates
        .iter()
        .map(|update| match &update.change {
            Some(Change::MessagePosted(_)) => "posted",
            Some(Change::MessageEdited(_)) => "edited",
            Some(Change::MessageDeleted(_)) => "deleted",
            Some(Change::MessagesPurged(_)) => "purged",
            Some(Change::ReactionsChanged(_)) => "reactions",
            Some(Change::MessagePinned(_)) => "pinned",
            Some(Change::MessageUnpinned(_)) => "unpinned",
            Some(Change::GroupEvent(_)) => "group_event",
            None => "none",
        })
        .collect()
}

async fn position(store: &dyn MessageStore, of: GroupId) -> LogPosition {
    store.log_positions(&[of]).await.expect("read a position").remove(0)
}

async fn message(store: &dyn MessageStore, of: GroupId, message_seq: i64) -> Message {
    let mut found = store.get_messages(of, &[message_seq]).await.expect("read a message");
    assert_eq!(found.len(), 1, "message {message_seq} of group {of}");
    found.remove(0)
}

fn seqs(messages: &[Message]) -> Vec<i64> {
    messages.iter().map(|message| message.message_seq).collect()
}

fn totals(pairs: &[(&str, i64)]) -> Vec<ReactionCount> {
    pairs.iter().map(|(raw, count)| ReactionCount { emoji: emoji(raw), count: *count }).collect()
}

fn react(of: GroupId, message_seq: i64, who: UserId, raw: &str, add: bool, emit_update: bool) -> LogWrite {
    LogWrite::React { group: of, message_seq, user: who, emoji: emoji(raw), add, max_distinct_emojis: 2, emit_update }
}

fn pin(of: GroupId, message_seq: i64, pin: bool) -> LogWrite {
    LogWrite::Pin { group: of, message_seq, actor: user(1), pin, max_pins: 2 }
}

fn edit(of: GroupId, message_seq: i64, editor: UserId, raw: &str) -> LogWrite {
    let text = MessageText::from_trusted(raw.to_owned());
    LogWrite::Edit { group: of, message_seq, editor, text, edit_window: Duration::from_secs(60) }
}

fn delete(of: GroupId, message_seq: i64, actor: UserId, actor_moderates: bool) -> LogWrite {
    LogWrite::Delete { group: of, message_seq, actor, actor_moderates }
}

fn member_left(of: GroupId, who: UserId) -> common::GroupEvent {
    common::GroupEvent {
        group_id: of.get(),
        actor_user_id: who.get(),
        occurred_at: Some(to_timestamp(at(0))),
        change: Some(common::group_event::Change::MemberLeft(common::MemberLeft { user_id: who.get() })),
    }
}

// ---------------------------------------------------------------------------------------
// Posting

/// Posts number messages and log entries 1, 2, 3, … per group, move the sender's read
/// marker, and read back exactly as returned (times at microsecond precision).
pub async fn posts_take_gapless_seqs_and_read_back(store: &dyn MessageStore) {
    let chat = group(7);
    let precise = at(1) + chrono::Duration::nanoseconds(123_456_789);
    let first = new_post(apply_one(store, post(chat, user(1), "k1", text("hello")), precise).await);
    assert_eq!((first.message_seq, first.event_seq, first.version), (1, 1, 1));
    assert_eq!(first.created_at, at(1) + chrono::Duration::microseconds(123_456), "kept to the microsecond");
    assert_eq!((first.sender, first.content.text.as_str()), (user(1), "hello"));
    assert_eq!((first.edited_at, first.deleted_at, first.pinned), (None, None, false));
    assert!(first.reactions.is_empty());
    let second = send(store, chat, user(2), "k1", at(2)).await;
    assert_eq!((second.message_seq, second.event_seq), (2, 2));
    assert_ne!(first.id, second.id);

    assert_eq!(store.get_messages(chat, &[2, 1]).await.unwrap(), vec![first.clone(), second.clone()]);
    assert_eq!(store.get_messages_by_id(chat, &[second.id, first.id]).await.unwrap(), vec![first, second]);
    let position = position(store, chat).await;
    let last_entry_token = latest_token(store, chat).await;
    assert_eq!(
        position,
        LogPosition {
            group_id: chat,
            last_event_seq: 2,
            last_message_seq: 2,
            oldest_retained_event_seq: 1,
            last_entry_token
        }
    );
    assert_eq!(kinds(&log_of(store, chat).await), ["posted", "posted"]);
    let unread = store.unread_counts(user(2), &[chat]).await.unwrap();
    assert_eq!(unread[0].read_message_seq, 2, "one's own message is read");
}

/// Attachments, mentions and replies are stored as given, and the log entry carries the
/// message exactly as stored.
pub async fn content_round_trips_through_the_store_and_the_log(store: &dyn MessageStore) {
    let chat = group(3);
    send(store, chat, user(1), "first", at(0)).await;
    let attachment = |media_id: &str, mime_type: &str| Attachment {
        media_id: media_id.to_owned(),
        mime_type: mime_type.to_owned(),
        size_bytes: 2_048,
        width: 640,
        height: 480,
        duration_ms: 1_500,
    };
    let content = Content {
        text: MessageText::from_trusted("look @4 @3".to_owned()),
        attachments: vec![attachment("m-1", "image/jpeg"), attachment("m-2", "video/mp4")],
        reply_to_message_seq: Some(1),
        mentions: vec![user(4), user(3)],
        mentions_all: false,
    };
    let posted = new_post(apply_one(store, post(chat, user(2), "rich", content.clone()), at(1)).await);
    assert_eq!(posted.content, content);
    assert_eq!(message(store, chat, 2).await, posted);
    let updates = log_of(store, chat).await;
    let Some(Change::MessagePosted(logged)) = &updates[1].change else { panic!("expected a post: {updates:?}") };
    assert_eq!(logged.message.as_ref(), Some(&message_to_proto(&posted)));
    assert_eq!(updates[1].occurred_at, Some(to_timestamp(at(1))));

    let everyone = Content { mentions_all: true, ..text("@all") };
    let announcement = new_post(apply_one(store, post(chat, user(1), "all", everyone.clone()), at(2)).await);
    assert_eq!(message(store, chat, announcement.message_seq).await.content, everyone);
}

/// A retry with the same content answers the original, as it stands now (edited here),
/// and writes nothing; slow mode does not refuse it.
pub async fn a_retry_with_the_same_content_returns_the_original(store: &dyn MessageStore) {
    let chat = group(1);
    let original = send(store, chat, user(1), "key", at(0)).await;
    send(store, chat, user(2), "other", at(1)).await;
    let before = position(store, chat).await;

    let retry = LogWrite::Post {
        message: new_message(chat, user(1), "key", text("key")),
        slow_mode: Some(Duration::from_secs(3_600)),
    };
    let answered = apply_one(store, retry.clone(), at(2)).await;
    assert_eq!(answered, Ok(Applied::Posted { message: original.clone(), duplicate: true }));
    assert_eq!(position(store, chat).await, before, "a retry writes nothing");

    let edited = match apply_one(store, edit(chat, 1, user(1), "fixed"), at(3)).await {
        Ok(Applied::Edited(edited)) => edited,
        other => panic!("expected an edit, got {other:?}"),
    };
    let after_edit = apply_one(store, retry, at(4)).await;
    assert_eq!(after_edit, Ok(Applied::Posted { message: edited, duplicate: true }), "matched on the original content");
    // The same key from another sender, or in another group, is another message.
    send(store, chat, user(3), "key", at(5)).await;
    send(store, group(2), user(1), "key", at(5)).await;

    // Retries among new posts: the new ones still take the next seqs, without a gap.
    let mixed = vec![
        post(chat, user(4), "n1", text("n1")),
        post(chat, user(1), "key", text("key")),
        post(chat, user(4), "n2", text("n2")),
        edit(chat, 4, user(4), "n1 edited"),
        post(chat, user(2), "other", text("other")),
        post(chat, user(4), "n3", text("n3")),
    ];
    let outcomes = store.apply(mixed, at(6)).await.unwrap().outcomes;
    let new_seqs: Vec<i64> = [0, 2, 5].iter().map(|index| new_post(outcomes[*index].clone()).message_seq).collect();
    assert_eq!(new_seqs, [4, 5, 6]);
    assert!(matches!(&outcomes[1], Ok(Applied::Posted { message, duplicate: true }) if message.message_seq == 1));
    assert!(matches!(&outcomes[3], Ok(Applied::Edited(message)) if message.message_seq == 4));
    assert!(matches!(&outcomes[4], Ok(Applied::Posted { message, duplicate: true }) if message.message_seq == 2));
    assert_eq!(position(store, chat).await.last_event_seq, 8, "3 posts, 1 edit, 2 retries writing nothing");
}

/// The same key with other content is refused, naming the original, and writes nothing.
pub async fn a_retry_with_other_content_is_a_conflict(store: &dyn MessageStore) {
    let chat = group(1);
    send(store, chat, user(1), "key", at(0)).await;
    let before = position(store, chat).await;
    let changed_text = apply_one(store, post(chat, user(1), "key", text("something else")), at(1)).await;
    let conflict = WriteError::IdempotencyConflict { key: "key".to_owned(), original_seq: 1 };
    assert_eq!(changed_text, Err(conflict.clone()));
    let mentions_too = Content { mentions: vec![user(2)], ..text("key") };
    assert_eq!(apply_one(store, post(chat, user(1), "key", mentions_too), at(1)).await, Err(conflict.clone()));
    let slowed = LogWrite::Post {
        message: new_message(chat, user(1), "key", text("changed")),
        slow_mode: Some(Duration::from_secs(3_600)),
    };
    assert_eq!(apply_one(store, slowed, at(1)).await, Err(conflict), "the key is checked before slow mode");
    assert_eq!(position(store, chat).await, before);
}

/// A key used twice inside one batch makes one message: the second is a retry (same
/// content) or a conflict (other content).
pub async fn the_same_key_twice_in_one_batch_makes_one_message(store: &dyn MessageStore) {
    let chat = group(4);
    let outcomes = store
        .apply(
            vec![
                post(chat, user(1), "twice", text("twice")),
                post(chat, user(1), "twice", text("twice")),
                post(chat, user(1), "twice", text("changed")),
                post(chat, user(2), "twice", text("twice")),
            ],
            at(0),
        )
        .await
        .unwrap()
        .outcomes;
    let first = match &outcomes[0] {
        Ok(Applied::Posted { message, duplicate: false }) => message.clone(),
        other => panic!("expected a post, got {other:?}"),
    };
    assert_eq!(outcomes[1], Ok(Applied::Posted { message: first.clone(), duplicate: true }));
    assert_eq!(outcomes[2], Err(WriteError::IdempotencyConflict { key: "twice".to_owned(), original_seq: 1 }));
    let other_sender = match &outcomes[3] {
        Ok(Applied::Posted { message, duplicate: false }) => message.clone(),
        other => panic!("expected a post, got {other:?}"),
    };
    assert_eq!((other_sender.message_seq, other_sender.event_seq), (2, 2));
    assert_eq!(position(store, chat).await.last_message_seq, 2);
}

/// A batch mixing groups and kinds numbers each group's entries without a gap, in batch
/// order; refused writes in between take no number; each write sees those before it.
pub async fn a_mixed_batch_is_gapless_and_refused_writes_take_no_seq(store: &dyn MessageStore) {
    let (first, second) = (group(10), group(20));
    let writes = vec![
        post(first, user(1), "a1", text("a1")),
        post(second, user(1), "b1", text("b1")),
        post(first, user(2), "bad-reply", Content { reply_to_message_seq: Some(5), ..text("x") }),
        edit(first, 1, user(2), "not mine"),
        LogWrite::System { source: "groups".to_owned(), outbox_id: 7, event: member_left(first, user(9)) },
        post(first, user(2), "a2", Content { reply_to_message_seq: Some(1), ..text("a2") }),
        react(first, 1, user(3), "👍", true, true),
        pin(first, 2, true),
        edit(first, 2, user(2), "a2 edited"),
        post(first, user(1), "a1", text("a1")),
        delete(second, 1, user(1), false),
        post(second, user(1), "b2", text("b2")),
        post(first, user(3), "a3", text("a3")),
    ];
    let outcomes = store.apply(writes, at(0)).await.unwrap().outcomes;
    assert_eq!(outcomes.len(), 13);
    assert_eq!(outcomes[2], Err(WriteError::ReplyTargetNotFound(5)));
    assert_eq!(outcomes[3], Err(WriteError::NotSender(1)));
    assert_eq!(outcomes[4], Ok(Applied::SystemAppended { event_seq: 2, duplicate: false }));
    let reacted = Applied::Reacted { totals: totals(&[("👍", 1)]), changed: true, event_seq: Some(4) };
    assert_eq!(outcomes[6], Ok(reacted));
    assert_eq!(outcomes[7], Ok(Applied::Pinned { event_seq: Some(5) }));
    let Ok(Applied::Edited(edited)) = &outcomes[8] else { panic!("expected an edit: {:?}", outcomes[8]) };
    assert_eq!((edited.event_seq, edited.version, edited.pinned), (3, 2, true));
    let Ok(Applied::Posted { message: retried, duplicate: true }) = &outcomes[9] else {
        panic!("expected a retry: {:?}", outcomes[9])
    };
    assert_eq!((retried.message_seq, retried.reactions.clone()), (1, totals(&[("👍", 1)])), "as it then stood");
    let posted: Vec<(i64, i64, i64)> = [0, 1, 5, 11, 12]
        .iter()
        .map(|index| match &outcomes[*index] {
            Ok(Applied::Posted { message, duplicate: false }) => {
                (message.group_id.get(), message.message_seq, message.event_seq)
            }
            other => panic!("expected a post at {index}, got {other:?}"),
        })
        .collect();
    assert_eq!(posted, [(10, 1, 1), (20, 1, 1), (10, 2, 3), (20, 2, 3), (10, 3, 7)]);
    let Ok(Applied::Deleted(tombstone)) = &outcomes[10] else { panic!("expected a delete: {:?}", outcomes[10]) };
    assert_eq!(tombstone.deleted_at, Some(at(0)));

    let first_log = log_of(store, first).await;
    assert_eq!(kinds(&first_log), ["posted", "group_event", "posted", "reactions", "pinned", "edited", "posted"]);
    assert_eq!(kinds(&log_of(store, second).await), ["posted", "deleted", "posted"]);
    let positions = store.log_positions(&[first, second]).await.unwrap();
    assert_eq!(positions.iter().map(|p| (p.last_event_seq, p.last_message_seq)).collect::<Vec<_>>(), [(7, 3), (3, 2)]);
}

/// 100 concurrent single-post batches into one group take message_seqs and event_seqs
/// 1..=100 exactly.
pub async fn concurrent_posts_to_one_group_are_gapless(store: &dyn MessageStore) {
    let hot = group(5);
    let attempts = (0..100).map(|index| async move {
        let key = format!("k{index}");
        let outcome = apply_one(store, post(hot, user(1 + index % 7), &key, text(&key)), at(index)).await;
        new_post(outcome)
    });
    let messages = join_all(attempts).await;
    let message_seqs: BTreeSet<i64> = messages.iter().map(|message| message.message_seq).collect();
    let event_seqs: BTreeSet<i64> = messages.iter().map(|message| message.event_seq).collect();
    assert_eq!(message_seqs, (1..=100).collect(), "no hole, no repeat");
    assert_eq!(event_seqs, (1..=100).collect(), "no hole, no repeat");
    let logged = log_of(store, hot).await;
    assert_eq!(logged.len(), 100);
    let posted_seqs: Vec<i64> = logged
        .iter()
        .map(|update| match &update.change {
            Some(Change::MessagePosted(posted)) => posted.message.as_ref().map_or(0, |message| message.message_seq),
            other => panic!("expected a post: {other:?}"),
        })
        .collect();
    assert_eq!(posted_seqs, (1..=100).collect::<Vec<_>>(), "posts are logged in message order");
}

/// Concurrent batches that each span two groups (in both orders) neither deadlock nor
/// leave holes: every group's seqs are exactly 1..=n.
pub async fn concurrent_batches_over_several_groups_are_gapless_per_group(store: &dyn MessageStore) {
    let groups = [group(1), group(2), group(3), group(4)];
    let attempts = (0..60_usize).map(|index| {
        let (here, there) = (groups[index % 4], groups[(index * 3 + 1) % 4]);
        let writes = vec![
            post(here, user(1), &format!("x{index}"), text("x")),
            post(there, user(2), &format!("y{index}"), text("y")),
        ];
        async move { store.apply(writes, at(0)).await.expect("apply a batch").outcomes }
    });
    let mut per_group: Vec<Vec<(i64, i64)>> = vec![Vec::new(); 4];
    for outcomes in join_all(attempts).await {
        for outcome in outcomes {
            let message = new_post(outcome);
            per_group[(message.group_id.get() - 1) as usize].push((message.message_seq, message.event_seq));
        }
    }
    for (index, mut taken) in per_group.into_iter().enumerate() {
        taken.sort_unstable();
        let count = taken.len() as i64;
        assert!(count > 0);
        let expected: Vec<(i64, i64)> = (1..=count).map(|seq| (seq, seq)).collect();
        assert_eq!(taken, expected, "group {}", index + 1);
        assert_eq!(position(store, groups[index]).await.last_event_seq, count);
    }
}

/// Slow mode refuses a sender's post until the interval since their last post (made with
/// or without slow mode) has passed; other senders, retries and zero intervals are free.
pub async fn slow_mode_spaces_a_senders_posts(store: &dyn MessageStore) {
    let community = group(2);
    let slow = |sender: i64, key: &str| LogWrite::Post {
        message: new_message(community, user(sender), key, text(key)),
        slow_mode: Some(Duration::from_secs(30)),
    };
    new_post(apply_one(store, slow(1, "a"), at(0)).await);
    let early = apply_one(store, slow(1, "b"), at(10)).await;
    assert_eq!(early, Err(WriteError::SlowMode { group: community, retry_after: Duration::from_secs(20) }));
    new_post(apply_one(store, slow(2, "c"), at(10)).await);
    assert!(matches!(apply_one(store, slow(1, "a"), at(11)).await, Ok(Applied::Posted { duplicate: true, .. })));
    new_post(apply_one(store, slow(1, "b"), at(30)).await);
    assert_eq!(position(store, community).await.last_message_seq, 3, "refusals took no seq");

    // Posted without slow mode, then slow mode turned on: the earlier post counts.
    new_post(apply_one(store, post(community, user(1), "d", text("d")), at(100)).await);
    let after_switch = apply_one(store, slow(1, "e"), at(105)).await;
    assert_eq!(after_switch, Err(WriteError::SlowMode { group: community, retry_after: Duration::from_secs(25) }));
    let off =
        LogWrite::Post { message: new_message(community, user(1), "f", text("f")), slow_mode: Some(Duration::ZERO) };
    new_post(apply_one(store, off, at(105)).await);

    // Within one batch, the first post of a sender holds back the second.
    let outcomes = store.apply(vec![slow(3, "g"), slow(3, "h")], at(200)).await.unwrap().outcomes;
    assert!(matches!(outcomes[0], Ok(Applied::Posted { duplicate: false, .. })));
    assert_eq!(outcomes[1], Err(WriteError::SlowMode { group: community, retry_after: Duration::from_secs(30) }));
}

/// A reply must name a message of the group (a tombstone will do).
pub async fn replies_need_an_existing_target(store: &dyn MessageStore) {
    let chat = group(8);
    send(store, chat, user(1), "first", at(0)).await;
    apply_one(store, delete(chat, 1, user(1), false), at(1)).await.unwrap();
    let reply =
        |key: &str, target: i64| post(chat, user(2), key, Content { reply_to_message_seq: Some(target), ..text(key) });
    assert_eq!(apply_one(store, reply("r0", 2), at(2)).await, Err(WriteError::ReplyTargetNotFound(2)));
    assert_eq!(apply_one(store, reply("r1", 0), at(2)).await, Err(WriteError::ReplyTargetNotFound(0)));
    let to_tombstone = new_post(apply_one(store, reply("r2", 1), at(2)).await);
    assert_eq!(to_tombstone.content.reply_to_message_seq, Some(1));
    assert_eq!(
        apply_one(store, post(group(9), user(2), "r3", Content { reply_to_message_seq: Some(1), ..text("x") }), at(2))
            .await,
        Err(WriteError::ReplyTargetNotFound(1)),
        "not another group's"
    );
}

// ---------------------------------------------------------------------------------------
// Changing messages

/// Only the sender edits, while the message is live and younger than the window; each
/// edit bumps the version and logs the message after it.
pub async fn edits_need_the_sender_a_live_message_and_the_window(store: &dyn MessageStore) {
    let chat = group(1);
    let original = send(store, chat, user(1), "typo", at(0)).await;
    assert_eq!(apply_one(store, edit(chat, 1, user(2), "hijack"), at(1)).await, Err(WriteError::NotSender(1)));
    let Ok(Applied::Edited(edited)) = apply_one(store, edit(chat, 1, user(1), "fixed"), at(10)).await else {
        panic!("expected an edit")
    };
    assert_eq!(edited.content.text.as_str(), "fixed");
    assert_eq!((edited.version, edited.edited_at, edited.created_at), (2, Some(at(10)), original.created_at));
    assert_eq!((edited.message_seq, edited.event_seq, edited.id), (1, 1, original.id), "the same message");
    assert_eq!(message(store, chat, 1).await, edited);
    assert!(matches!(apply_one(store, edit(chat, 1, user(1), "again"), at(59)).await, Ok(Applied::Edited(_))));
    let closed = WriteError::EditWindowClosed { message_seq: 1, window: Duration::from_secs(60) };
    assert_eq!(apply_one(store, edit(chat, 1, user(1), "too late"), at(60)).await, Err(closed));

    let updates = log_of(store, chat).await;
    assert_eq!(kinds(&updates), ["posted", "edited", "edited"]);
    let Some(Change::MessageEdited(logged)) = &updates[1].change else { unreachable!("checked above") };
    assert_eq!(logged.message.as_ref(), Some(&message_to_proto(&edited)));
    assert_eq!(message(store, chat, 1).await.version, 3);
}

/// A delete (by the sender or a moderator) turns a message into a tombstone: content,
/// reactions and pin cleared. Deleting a tombstone answers it and writes nothing.
pub async fn deletes_make_tombstones_once_and_moderators_may_delete(store: &dyn MessageStore) {
    let chat = group(1);
    let content = Content {
        mentions: vec![user(3)],
        attachments: vec![Attachment {
            media_id: "m".into(),
            mime_type: "image/png".into(),
            size_bytes: 1,
            width: 1,
            height: 1,
            duration_ms: 0,
        }],
        ..text("secret")
    };
    let original = new_post(apply_one(store, post(chat, user(1), "k", content), at(0)).await);
    apply_one(store, react(chat, 1, user(2), "🔥", true, false), at(1)).await.unwrap();
    apply_one(store, pin(chat, 1, true), at(1)).await.unwrap();
    assert_eq!(apply_one(store, delete(chat, 1, user(2), false), at(2)).await, Err(WriteError::NotSender(1)));

    let Ok(Applied::Deleted(tombstone)) = apply_one(store, delete(chat, 1, user(2), true), at(3)).await else {
        panic!("a moderator deletes")
    };
    assert_eq!(tombstone.content, Content::default());
    assert_eq!((tombstone.deleted_at, tombstone.pinned, tombstone.reactions.clone()), (Some(at(3)), false, vec![]));
    assert_eq!((tombstone.id, tombstone.sender, tombstone.created_at), (original.id, user(1), original.created_at));
    assert_eq!(message(store, chat, 1).await, tombstone);
    let before = position(store, chat).await;
    assert_eq!(apply_one(store, delete(chat, 1, user(1), false), at(4)).await, Ok(Applied::Deleted(tombstone.clone())));
    assert_eq!(apply_one(store, delete(chat, 1, user(2), false), at(4)).await, Err(WriteError::NotSender(1)));
    assert_eq!(position(store, chat).await, before, "a tombstone is deleted once");

    let updates = log_of(store, chat).await;
    assert_eq!(kinds(&updates), ["posted", "pinned", "deleted"]);
    let Some(Change::MessageDeleted(deleted)) = &updates[2].change else { unreachable!("checked above") };
    let expected = (1, original.id.to_string(), 2);
    assert_eq!((deleted.message_seq, deleted.message_id.clone(), deleted.deleted_by_user_id), expected);
}

/// A purge tombstones every live message of one user (since a time) under one update.
pub async fn purge_tombstones_a_users_messages_since_a_time(store: &dyn MessageStore) {
    let chat = group(6);
    send(store, chat, user(1), "m1", at(0)).await;
    send(store, chat, user(1), "m2", at(10)).await;
    send(store, chat, user(2), "m3", at(10)).await;
    send(store, chat, user(1), "m4", at(20)).await;
    apply_one(store, delete(chat, 4, user(1), false), at(21)).await.unwrap();
    let purge = |since: Option<DateTime<Utc>>| LogWrite::Purge { group: chat, user: user(1), since, actor: user(9) };

    let recent = apply_one(store, purge(Some(at(5))), at(30)).await;
    assert_eq!(recent, Ok(Applied::Purged { message_seqs: vec![2], event_seq: Some(6) }));
    let everything = apply_one(store, purge(None), at(31)).await;
    assert_eq!(everything, Ok(Applied::Purged { message_seqs: vec![1], event_seq: Some(7) }));
    assert_eq!(
        apply_one(store, purge(None), at(32)).await,
        Ok(Applied::Purged { message_seqs: vec![], event_seq: None })
    );
    let nobody = LogWrite::Purge { group: chat, user: user(5), since: None, actor: user(9) };
    assert_eq!(apply_one(store, nobody, at(32)).await, Ok(Applied::Purged { message_seqs: vec![], event_seq: None }));

    let messages = store.get_messages(chat, &[1, 2, 3, 4]).await.unwrap();
    let deleted: Vec<bool> = messages.iter().map(|message| message.deleted_at.is_some()).collect();
    assert_eq!(deleted, [true, true, false, true]);
    assert_eq!(messages[0].content, Content::default());
    let updates = log_of(store, chat).await;
    assert_eq!(kinds(&updates), ["posted", "posted", "posted", "posted", "deleted", "purged", "purged"]);
    let Some(Change::MessagesPurged(purged)) = &updates[5].change else { unreachable!("checked above") };
    assert_eq!((purged.user_id, purged.message_seqs.clone(), purged.purged_by_user_id), (1, vec![2], 9));
}

/// A purge of more than [`MAX_PURGED_PER_UPDATE`] messages appends one update per that many,
/// in order and in one commit, every message listed once.
pub async fn a_large_purge_is_listed_by_bounded_updates(store: &dyn MessageStore) {
    let chat = group(7);
    let count = MAX_PURGED_PER_UPDATE * 2 + 1;
    let posts = (0..count).map(|index| post(chat, user(1), &format!("k{index}"), text("m"))).collect();
    store.apply(posts, at(0)).await.unwrap();
    let purge = LogWrite::Purge { group: chat, user: user(1), since: None, actor: user(9) };
    let last = i64::try_from(count).unwrap() + 3;
    let Ok(Applied::Purged { message_seqs, event_seq }) = apply_one(store, purge, at(1)).await else {
        panic!("a purge")
    };
    assert_eq!((message_seqs.len(), event_seq), (count, Some(last)));
    let read = store.get_updates(chat, i64::try_from(count).unwrap(), PageSize::new(10)).await.unwrap();
    let listed: Vec<Vec<i64>> = read
        .updates
        .iter()
        .map(|stored| match common::Update::decode(stored.payload.as_ref()).expect("decodable").change {
            Some(Change::MessagesPurged(purged)) => purged.message_seqs,
            other => panic!("a purge update: {other:?}"),
        })
        .collect();
    assert_eq!(listed.iter().map(Vec::len).collect::<Vec<_>>(), [MAX_PURGED_PER_UPDATE, MAX_PURGED_PER_UPDATE, 1]);
    assert_eq!(listed.concat(), (1..=i64::try_from(count).unwrap()).collect::<Vec<_>>());
}

/// Adding a reaction twice or removing one never added changes nothing; totals are per
/// emoji, ordered by emoji, and read back with the message.
pub async fn reactions_add_and_remove_idempotently(store: &dyn MessageStore) {
    let chat = group(1);
    send(store, chat, user(1), "m", at(0)).await;
    let reacted =
        |pairs: &[(&str, i64)], changed: bool| Ok(Applied::Reacted { totals: totals(pairs), changed, event_seq: None });
    assert_eq!(apply_one(store, react(chat, 1, user(2), "👍", true, false), at(1)).await, reacted(&[("👍", 1)], true));
    assert_eq!(apply_one(store, react(chat, 1, user(2), "👍", true, false), at(2)).await, reacted(&[("👍", 1)], false));
    assert_eq!(apply_one(store, react(chat, 1, user(3), "👍", true, false), at(3)).await, reacted(&[("👍", 2)], true));
    let both = reacted(&[("❤️", 1), ("👍", 2)], true);
    assert_eq!(apply_one(store, react(chat, 1, user(3), "❤️", true, false), at(4)).await, both);
    assert_eq!(message(store, chat, 1).await.reactions, totals(&[("❤️", 1), ("👍", 2)]));
    assert_eq!(apply_one(store, react(chat, 1, user(3), "❤️", false, false), at(5)).await, reacted(&[("👍", 2)], true));
    assert_eq!(
        apply_one(store, react(chat, 1, user(3), "❤️", false, false), at(6)).await,
        reacted(&[("👍", 2)], false)
    );
    assert_eq!(apply_one(store, react(chat, 1, user(2), "👍", false, false), at(7)).await, reacted(&[("👍", 1)], true));
    assert_eq!(message(store, chat, 1).await.reactions, totals(&[("👍", 1)]));
    assert_eq!(position(store, chat).await.last_event_seq, 1, "no update was asked for");
}

/// A message carries at most `max_distinct_emojis` different emojis; more of an emoji it
/// already carries is always fine.
pub async fn reactions_are_limited_to_distinct_emojis(store: &dyn MessageStore) {
    let chat = group(1);
    send(store, chat, user(1), "m", at(0)).await;
    apply_one(store, react(chat, 1, user(1), "a", true, false), at(1)).await.unwrap();
    apply_one(store, react(chat, 1, user(1), "b", true, false), at(1)).await.unwrap();
    let refused = apply_one(store, react(chat, 1, user(2), "c", true, false), at(2)).await;
    assert_eq!(refused, Err(WriteError::TooManyEmojis { message_seq: 1, limit: 2 }));
    let more_of_a = apply_one(store, react(chat, 1, user(2), "a", true, false), at(2)).await;
    assert!(matches!(more_of_a, Ok(Applied::Reacted { changed: true, .. })), "{more_of_a:?}");
    apply_one(store, react(chat, 1, user(1), "b", false, false), at(3)).await.unwrap();
    let now_fits = apply_one(store, react(chat, 1, user(2), "c", true, false), at(4)).await;
    let expected = Applied::Reacted { totals: totals(&[("a", 2), ("c", 1)]), changed: true, event_seq: None };
    assert_eq!(now_fits, Ok(expected));
}

/// A reaction appends `ReactionsChanged` only when asked and when it changed something;
/// `EmitReactionTotals` appends the current totals.
pub async fn reaction_updates_are_appended_only_when_asked(store: &dyn MessageStore) {
    let chat = group(1);
    send(store, chat, user(1), "m", at(0)).await;
    let emitted = apply_one(store, react(chat, 1, user(2), "👍", true, true), at(1)).await;
    assert_eq!(emitted, Ok(Applied::Reacted { totals: totals(&[("👍", 1)]), changed: true, event_seq: Some(2) }));
    let unchanged = apply_one(store, react(chat, 1, user(2), "👍", true, true), at(2)).await;
    assert_eq!(unchanged, Ok(Applied::Reacted { totals: totals(&[("👍", 1)]), changed: false, event_seq: None }));
    apply_one(store, react(chat, 1, user(3), "😂", true, false), at(3)).await.unwrap();
    let flushed = apply_one(store, LogWrite::EmitReactionTotals { group: chat, message_seq: 1 }, at(4)).await;
    assert_eq!(flushed, Ok(Applied::ReactionTotalsEmitted { event_seq: 3 }));

    let updates = log_of(store, chat).await;
    assert_eq!(kinds(&updates), ["posted", "reactions", "reactions"]);
    let Some(Change::ReactionsChanged(coalesced)) = &updates[2].change else { unreachable!("checked above") };
    let carried: Vec<(String, i64)> =
        coalesced.reactions.iter().map(|total| (total.emoji.clone(), total.count)).collect();
    assert_eq!((coalesced.message_seq, carried), (1, vec![("👍".to_owned(), 1), ("😂".to_owned(), 1)]));
}

/// Pinning a pinned message or unpinning an unpinned one changes nothing; a group holds at
/// most `max_pins` pins, and deleting a pinned message frees its place.
pub async fn pins_toggle_once_and_respect_the_limit(store: &dyn MessageStore) {
    let chat = group(1);
    for key in ["m1", "m2", "m3"] {
        send(store, chat, user(1), key, at(0)).await;
    }
    assert_eq!(apply_one(store, pin(chat, 1, true), at(1)).await, Ok(Applied::Pinned { event_seq: Some(4) }));
    assert_eq!(apply_one(store, pin(chat, 1, true), at(1)).await, Ok(Applied::Pinned { event_seq: None }));
    assert_eq!(apply_one(store, pin(chat, 2, true), at(1)).await, Ok(Applied::Pinned { event_seq: Some(5) }));
    let full = WriteError::PinLimit { group: chat, limit: 2 };
    assert_eq!(apply_one(store, pin(chat, 3, true), at(1)).await, Err(full));
    assert_eq!(apply_one(store, pin(chat, 1, false), at(2)).await, Ok(Applied::Pinned { event_seq: Some(6) }));
    assert_eq!(apply_one(store, pin(chat, 1, false), at(2)).await, Ok(Applied::Pinned { event_seq: None }));
    assert_eq!(apply_one(store, pin(chat, 3, true), at(3)).await, Ok(Applied::Pinned { event_seq: Some(7) }));
    let pinned: Vec<bool> = store.get_messages(chat, &[1, 2, 3]).await.unwrap().iter().map(|m| m.pinned).collect();
    assert_eq!(pinned, [false, true, true]);

    apply_one(store, delete(chat, 2, user(1), false), at(4)).await.unwrap();
    assert_eq!(apply_one(store, pin(chat, 1, true), at(5)).await, Ok(Applied::Pinned { event_seq: Some(9) }));
    let updates = log_of(store, chat).await;
    assert_eq!(kinds(&updates[3..]), ["pinned", "pinned", "unpinned", "pinned", "deleted", "pinned"]);
    let Some(Change::MessageUnpinned(unpinned)) = &updates[5].change else { unreachable!("checked above") };
    assert_eq!((unpinned.message_seq, unpinned.unpinned_by_user_id), (1, 1));
}

/// Tombstones refuse edits, reactions and pins.
pub async fn deleted_messages_refuse_edits_reactions_and_pins(store: &dyn MessageStore) {
    let chat = group(1);
    send(store, chat, user(1), "m", at(0)).await;
    apply_one(store, delete(chat, 1, user(1), false), at(1)).await.unwrap();
    let before = position(store, chat).await;
    assert_eq!(apply_one(store, edit(chat, 1, user(1), "x"), at(2)).await, Err(WriteError::Deleted(1)));
    assert_eq!(apply_one(store, react(chat, 1, user(2), "👍", true, true), at(2)).await, Err(WriteError::Deleted(1)));
    assert_eq!(apply_one(store, react(chat, 1, user(2), "👍", false, true), at(2)).await, Err(WriteError::Deleted(1)));
    assert_eq!(apply_one(store, pin(chat, 1, true), at(2)).await, Err(WriteError::Deleted(1)));
    assert_eq!(position(store, chat).await, before);
    // The coalescer may still flush a tombstone's totals: it has none left.
    let flushed = apply_one(store, LogWrite::EmitReactionTotals { group: chat, message_seq: 1 }, at(3)).await;
    assert_eq!(flushed, Ok(Applied::ReactionTotalsEmitted { event_seq: before.last_event_seq + 1 }));
    let Some(Change::ReactionsChanged(totals)) = log_of(store, chat).await.pop().and_then(|update| update.change)
    else {
        panic!("expected reaction totals")
    };
    assert!(totals.reactions.is_empty());
}

/// Every kind that names a message refuses one that does not exist, writing nothing.
pub async fn missing_messages_are_not_found_by_every_kind(store: &dyn MessageStore) {
    let chat = group(1);
    send(store, chat, user(1), "m", at(0)).await;
    let missing = WriteError::MessageNotFound { group: chat, message_seq: 99 };
    let writes = vec![
        edit(chat, 99, user(1), "x"),
        delete(chat, 99, user(1), true),
        react(chat, 99, user(1), "👍", true, true),
        LogWrite::EmitReactionTotals { group: chat, message_seq: 99 },
        pin(chat, 99, true),
    ];
    let outcomes = store.apply(writes, at(1)).await.unwrap().outcomes;
    assert_eq!(outcomes, vec![Err(missing); 5]);
    let elsewhere = apply_one(store, edit(group(2), 1, user(1), "x"), at(1)).await;
    assert_eq!(elsewhere, Err(WriteError::MessageNotFound { group: group(2), message_seq: 1 }));
    assert_eq!(position(store, chat).await.last_event_seq, 1);
}

/// A relayed group event is appended once per (source, outbox id), within a batch or across
/// batches; a repeat answers the original position, the same id from another source is
/// another event, and a repeat with other content is refused and appends nothing.
pub async fn system_events_are_idempotent_on_the_source_and_outbox_id(store: &dyn MessageStore) {
    let chat = group(4);
    send(store, chat, user(1), "m", at(0)).await;
    let event = member_left(chat, user(2));
    let from = |source: &str, outbox_id: i64, event: &common::GroupEvent| LogWrite::System {
        source: source.to_owned(),
        outbox_id,
        event: event.clone(),
    };
    let system = |outbox_id: i64| from("groups", outbox_id, &event);
    let outcomes = store.apply(vec![system(41), system(41), system(42)], at(1)).await.unwrap().outcomes;
    assert_eq!(
        outcomes,
        vec![
            Ok(Applied::SystemAppended { event_seq: 2, duplicate: false }),
            Ok(Applied::SystemAppended { event_seq: 2, duplicate: true }),
            Ok(Applied::SystemAppended { event_seq: 3, duplicate: false }),
        ]
    );
    assert_eq!(
        apply_one(store, system(41), at(2)).await,
        Ok(Applied::SystemAppended { event_seq: 2, duplicate: true })
    );
    let updates = log_of(store, chat).await;
    assert_eq!(kinds(&updates), ["posted", "group_event", "group_event"]);
    assert_eq!(updates[1].change, Some(Change::GroupEvent(event.clone())));
    let counters = position(store, chat).await;
    assert_eq!((counters.last_event_seq, counters.last_message_seq), (3, 1), "events are not messages");

    // Another content under a taken (source, outbox id): refused, within a batch or across.
    let forged = member_left(chat, user(3));
    assert_eq!(
        apply_one(store, from("groups", 41, &forged), at(3)).await,
        Err(WriteError::SystemEventConflict { origin: "groups".to_owned(), outbox_id: 41, original_seq: 2 })
    );
    let outcomes = store.apply(vec![system(43), from("groups", 43, &forged)], at(3)).await.unwrap().outcomes;
    assert_eq!(
        outcomes,
        vec![
            Ok(Applied::SystemAppended { event_seq: 4, duplicate: false }),
            Err(WriteError::SystemEventConflict { origin: "groups".to_owned(), outbox_id: 43, original_seq: 4 }),
        ]
    );
    // Outbox ids are per source: another source's 41 is its own event.
    assert_eq!(
        apply_one(store, from("billing", 41, &event), at(4)).await,
        Ok(Applied::SystemAppended { event_seq: 5, duplicate: false })
    );
    assert_eq!(position(store, chat).await.last_event_seq, 5, "refused repeats appended nothing");
}

// ---------------------------------------------------------------------------------------
// Reading

/// Listings page by message_seq after (forward) or before (backward) an anchor, in the
/// direction of travel, with one extra row when there is more.
pub async fn list_messages_pages_both_ways(store: &dyn MessageStore) {
    let chat = group(3);
    for index in 1..=5 {
        send(store, chat, user(1), &format!("m{index}"), at(index)).await;
    }
    send(store, group(4), user(1), "elsewhere", at(0)).await;
    let list = |direction: Direction, anchor: Option<i64>, limit: u32| async move {
        seqs(&store.list_messages(chat, direction, anchor, None, PageSize::new(limit)).await.unwrap())
    };
    assert_eq!(list(Direction::Forward, None, 2).await, [1, 2, 3]);
    assert_eq!(list(Direction::Forward, Some(3), 2).await, [4, 5]);
    assert_eq!(list(Direction::Forward, Some(5), 2).await, Vec::<i64>::new());
    assert_eq!(list(Direction::Backward, None, 2).await, [5, 4, 3]);
    assert_eq!(list(Direction::Backward, Some(3), 5).await, [2, 1]);
    assert_eq!(list(Direction::Backward, Some(1), 5).await, Vec::<i64>::new());
    let page = store.list_messages(chat, Direction::Forward, Some(1), None, PageSize::new(1)).await.unwrap();
    assert_eq!(page, store.get_messages(chat, &[2, 3]).await.unwrap(), "whole messages");
}

/// `not_before` hides messages created earlier, in both directions.
pub async fn list_messages_skips_messages_before_not_before(store: &dyn MessageStore) {
    let chat = group(3);
    for (index, seconds) in [0, 10, 20, 30].into_iter().enumerate() {
        send(store, chat, user(1), &format!("m{index}"), at(seconds)).await;
    }
    let list = |direction: Direction, anchor: Option<i64>| async move {
        let listed = store.list_messages(chat, direction, anchor, Some(at(10)), PageSize::new(10)).await.unwrap();
        seqs(&listed)
    };
    assert_eq!(list(Direction::Forward, None).await, [2, 3, 4]);
    assert_eq!(list(Direction::Backward, None).await, [4, 3, 2]);
    assert_eq!(list(Direction::Backward, Some(3)).await, [2]);
}

/// Reads by seq or id leave unknown ones out and come back ascending.
pub async fn get_messages_skip_unknown_seqs_and_ids(store: &dyn MessageStore) {
    let chat = group(3);
    let first = send(store, chat, user(1), "m1", at(0)).await;
    let second = send(store, chat, user(1), "m2", at(0)).await;
    let elsewhere = send(store, group(4), user(1), "m3", at(0)).await;
    assert_eq!(store.get_messages(chat, &[9, 2, 0, 1, 2]).await.unwrap(), vec![first.clone(), second.clone()]);
    assert_eq!(store.get_messages(chat, &[]).await.unwrap(), vec![]);
    let ids = [elsewhere.id, second.id, uuid::Uuid::now_v7(), first.id];
    assert_eq!(store.get_messages_by_id(chat, &ids).await.unwrap(), vec![first, second]);
    assert_eq!(store.get_messages_by_id(chat, &[]).await.unwrap(), vec![]);
}

/// The log pages in event_seq order after a position, each entry decodable, with the
/// group's position alongside.
pub async fn get_updates_pages_the_log_and_reports_the_position(store: &dyn MessageStore) {
    let chat = group(2);
    for index in 1..=5 {
        send(store, chat, user(1), &format!("m{index}"), at(index)).await;
    }
    let first_page = store.get_updates(chat, 0, PageSize::new(2)).await.unwrap();
    let event_seqs: Vec<i64> = first_page.updates.iter().map(|update| update.event_seq).collect();
    assert_eq!(event_seqs, [1, 2]);
    assert_eq!((first_page.position.last_event_seq, first_page.position.last_message_seq), (5, 5));
    let rest = store.get_updates(chat, 2, PageSize::new(10)).await.unwrap();
    let decoded: Vec<common::Update> =
        rest.updates.iter().map(|update| common::Update::decode(update.payload.as_ref()).unwrap()).collect();
    assert_eq!(decoded.iter().map(|update| update.event_seq).collect::<Vec<_>>(), [3, 4, 5]);
    assert_eq!(decoded[0].occurred_at, Some(to_timestamp(at(3))));
    assert!(rest.updates.iter().all(|update| update.group_id == chat));
    assert!(store.get_updates(chat, 5, PageSize::new(10)).await.unwrap().updates.is_empty());
    let unknown = store.get_updates(group(99), 0, PageSize::new(10)).await.unwrap();
    assert_eq!((unknown.updates.len(), unknown.position), (0, LogPosition::empty(group(99))));
}

/// Positions come in the order asked, empty for groups without a log.
pub async fn log_positions_keep_the_order_asked(store: &dyn MessageStore) {
    send(store, group(1), user(1), "a", at(0)).await;
    send(store, group(2), user(1), "b", at(0)).await;
    send(store, group(2), user(1), "c", at(0)).await;
    let positions = store.log_positions(&[group(2), group(50), group(1)]).await.unwrap();
    let at = |group_id, last: i64, last_entry_token| LogPosition {
        group_id,
        last_event_seq: last,
        last_message_seq: last,
        oldest_retained_event_seq: 1,
        last_entry_token,
    };
    assert_eq!(
        positions,
        vec![
            at(group(2), 2, latest_token(store, group(2)).await),
            LogPosition::empty(group(50)),
            at(group(1), 1, latest_token(store, group(1)).await),
        ]
    );
    assert_eq!(store.log_positions(&[]).await.unwrap(), vec![]);
}

/// A read marker only moves forward and never past the latest message.
pub async fn mark_read_never_goes_backwards_and_is_clamped(store: &dyn MessageStore) {
    let chat = group(1);
    for key in ["a", "b", "c"] {
        send(store, chat, user(1), key, at(0)).await;
    }
    assert_eq!(store.mark_read(chat, user(2), 2).await.unwrap(), 2);
    assert_eq!(store.mark_read(chat, user(2), 1).await.unwrap(), 2, "never backwards");
    assert_eq!(store.mark_read(chat, user(2), 10).await.unwrap(), 3, "clamped to the latest message");
    assert_eq!(store.mark_read(chat, user(3), -4).await.unwrap(), 0);
    assert_eq!(store.mark_read(group(9), user(2), 5).await.unwrap(), 0, "a group without messages");
    assert_eq!(store.unread_counts(user(2), &[chat]).await.unwrap()[0].read_message_seq, 3);
}

/// Unread counts are the messages after the marker (tombstones included) and those of
/// them that mention the user or everyone (tombstones mention nobody); posting marks
/// one's own message read.
pub async fn unread_counts_count_messages_and_mentions(store: &dyn MessageStore) {
    let chat = group(1);
    let mentioning = |key: &str, users: &[i64], all: bool| {
        let content = Content { mentions: users.iter().map(|id| user(*id)).collect(), mentions_all: all, ..text(key) };
        post(chat, user(1), key, content)
    };
    let writes = vec![
        mentioning("m1", &[2], false),
        post(chat, user(2), "m2", text("m2")),
        mentioning("m3", &[], true),
        mentioning("m4", &[3], false),
        mentioning("m5", &[2, 3], false),
        mentioning("m6", &[2], true),
        mentioning("m7", &[2], false),
    ];
    store.apply(writes, at(0)).await.unwrap();
    apply_one(store, delete(chat, 7, user(1), false), at(1)).await.unwrap();
    let unread = |marker: i64, messages: i64, mentions: i64| Unread {
        group_id: chat,
        unread_messages: messages,
        unread_mentions: mentions,
        last_message_seq: 7,
        read_message_seq: marker,
    };
    assert_eq!(store.unread_counts(user(2), &[chat]).await.unwrap(), vec![unread(2, 5, 3)]);
    assert_eq!(store.unread_counts(user(3), &[chat]).await.unwrap(), vec![unread(0, 7, 4)]);
    assert_eq!(store.unread_counts(user(1), &[chat]).await.unwrap(), vec![unread(7, 0, 0)]);
    store.mark_read(chat, user(3), 4).await.unwrap();
    let both = store.unread_counts(user(3), &[group(2), chat, group(2)]).await.unwrap();
    let empty =
        Unread { group_id: group(2), unread_messages: 0, unread_mentions: 0, last_message_seq: 0, read_message_seq: 0 };
    assert_eq!(both, vec![empty, unread(4, 3, 2), empty]);
}

// ---------------------------------------------------------------------------------------
// Outbox and pruning

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
    updates.iter().map(|update| (update.group_id.get(), update.event_seq)).collect()
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
    let mut logged = store.get_updates(group(2), 0, PageSize::new(10)).await.unwrap().updates;
    logged.extend(store.get_updates(group(1), 0, PageSize::new(10)).await.unwrap().updates);
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
        after = Some((last.group_id, last.event_seq));
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
    let logged = store.get_updates(group(65), 0, PageSize::new(10)).await.unwrap().updates;
    let read = store.unpublished(&[1], at(100), Some((group(1), 5)), 100).await.unwrap();
    assert_eq!(read, logged, "a cursor resumes after its key, with the logged payloads");

    let acked: Vec<(GroupId, i64)> =
        [(1, 1), (1, 2), (2, 5), (7, 1)].into_iter().map(|(group_id, seq)| (group(group_id), seq)).collect();
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
    let waiting: Vec<(GroupId, i64)> =
        outbox_of(store).await.iter().map(|update| (update.group_id, update.event_seq)).collect();
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
    let summary: Vec<(i64, i64, i64)> =
        positions.iter().map(|p| (p.oldest_retained_event_seq, p.last_event_seq, p.last_message_seq)).collect();
    assert_eq!(summary, [(5, 5, 5), (2, 1, 1), (1, 1, 1)]);
    let left = store.get_updates(busy, 0, PageSize::new(10)).await.unwrap();
    assert_eq!(left.updates.iter().map(|update| update.event_seq).collect::<Vec<_>>(), [5]);
    assert!(store.get_updates(quiet, 0, PageSize::new(10)).await.unwrap().updates.is_empty());
    assert_eq!(store.prune_updates(at(150)).await.unwrap(), 0, "nothing more to drop");
    assert_eq!(log_of(store, busy).await.len(), 1);

    // The log goes on from where it was.
    let next = send(store, quiet, user(1), "h", at(400)).await;
    assert_eq!((next.message_seq, next.event_seq), (2, 2));
    assert_eq!(store.get_messages(busy, &[1]).await.unwrap().len(), 1, "messages are kept");
}

/// Entries still waiting in the outbox (and any after them) survive pruning.
pub async fn prune_keeps_updates_still_waiting_in_the_outbox(store: &dyn MessageStore) {
    let chat = group(1);
    for index in 0..3 {
        send(store, chat, user(1), &format!("m{index}"), at(index)).await;
    }
    store.ack_outbox(&[(chat, 1)]).await.unwrap();
    assert_eq!(store.prune_updates(at(1_000)).await.unwrap(), 1);
    assert_eq!(position(store, chat).await.oldest_retained_event_seq, 2);
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
