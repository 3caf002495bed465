//! What the tests share: fixed times, ids, writes made to order and the log read back.

use std::time::Duration;

use chrono::{DateTime, Utc};
use fanfare_core::ids::{EventSeq, GroupId, MessageSeq, UserId};
use fanfare_core::paging::PageSize;
use fanfare_core::time::to_timestamp;
use fanfare_proto::common::v1 as common;
use fanfare_proto::common::v1::update::Change;
use prost::Message as _;

use crate::domain::{
    ActorRole, ClientMessageId, Content, Emoji, LogPosition, Message, MessageText, NewMessage, PinChange,
    ReactionChange, ReactionCount, ReactionUpdate,
};
use crate::store::{Applied, LogWrite, MessageStore, WriteError};

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

/// A message_seq.
pub fn message_seq(raw: i64) -> MessageSeq {
    MessageSeq::from_trusted(raw)
}

/// An event_seq.
pub fn event_seq(raw: i64) -> EventSeq {
    EventSeq::from_trusted(raw)
}

/// The message_seqs of `raws`, in order.
pub fn message_seqs(raws: &[i64]) -> Vec<MessageSeq> {
    raws.iter().copied().map(message_seq).collect()
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
pub(super) fn new_post(outcome: Result<Applied, WriteError>) -> Message {
    match outcome {
        Ok(Applied::Posted { message, duplicate: false }) => message,
        other => panic!("expected a new post, got {other:?}"),
    }
}

/// Posts text and returns the new message.
pub(super) async fn send(
    store: &dyn MessageStore,
    to: GroupId,
    sender: UserId,
    key: &str,
    now: DateTime<Utc>,
) -> Message {
    new_post(apply_one(store, post(to, sender, key, text(key)), now).await)
}

/// Every update of a group's log, decoded, checked to be numbered 1, 2, 3, …
pub(super) async fn log_of(store: &dyn MessageStore, of: GroupId) -> Vec<common::Update> {
    let read = store.get_updates(of, EventSeq::ZERO, PageSize::new(1_000)).await.expect("read the log");
    let updates: Vec<common::Update> = read
        .updates
        .iter()
        .map(|stored| {
            let update = common::Update::decode(stored.payload.as_ref()).expect("a decodable update");
            assert_eq!((update.group_id, update.event_seq), (stored.group_id.get(), stored.event_seq.get()));
            update
        })
        .collect();
    let first = read.position.oldest_retained_event_seq.get();
    let seqs: Vec<i64> = updates.iter().map(|update| update.event_seq).collect();
    assert_eq!(seqs, (first..=read.position.last_event_seq.get()).collect::<Vec<_>>(), "a gapless log");
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
pub(super) async fn latest_token(store: &dyn MessageStore, of: GroupId) -> u64 {
    log_of(store, of).await.last().map_or(0, |update| update.entry_token)
}

/// The kind of each change, for compact assertions.
pub(super) fn kinds(updates: &[common::Update]) -> Vec<&'static str> {
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

pub(super) async fn position(store: &dyn MessageStore, of: GroupId) -> LogPosition {
    store.log_positions(&[of]).await.expect("read a position").remove(0)
}

pub(super) async fn message(store: &dyn MessageStore, of: GroupId, seq: i64) -> Message {
    let mut found = store.get_messages(of, &[message_seq(seq)]).await.expect("read a message");
    assert_eq!(found.len(), 1, "message {seq} of group {of}");
    found.remove(0)
}

pub(super) fn seqs(messages: &[Message]) -> Vec<i64> {
    messages.iter().map(|message| message.message_seq.get()).collect()
}

pub(super) fn totals(pairs: &[(&str, i64)]) -> Vec<ReactionCount> {
    pairs.iter().map(|(raw, count)| ReactionCount { emoji: emoji(raw), count: *count }).collect()
}

pub(super) fn react(
    of: GroupId,
    seq: i64,
    who: UserId,
    raw: &str,
    change: ReactionChange,
    update: ReactionUpdate,
) -> LogWrite {
    let message_seq = message_seq(seq);
    LogWrite::React { group: of, message_seq, user: who, emoji: emoji(raw), change, max_distinct_emojis: 2, update }
}

pub(super) fn pin(of: GroupId, seq: i64, change: PinChange) -> LogWrite {
    LogWrite::Pin { group: of, message_seq: message_seq(seq), actor: user(1), change, max_pins: 2 }
}

pub(super) fn edit(of: GroupId, seq: i64, editor: UserId, raw: &str) -> LogWrite {
    let text = MessageText::from_trusted(raw.to_owned());
    LogWrite::Edit { group: of, message_seq: message_seq(seq), editor, text, edit_window: Duration::from_secs(60) }
}

pub(super) fn delete(of: GroupId, seq: i64, actor: UserId, actor_role: ActorRole) -> LogWrite {
    LogWrite::Delete { group: of, message_seq: message_seq(seq), actor, actor_role }
}

pub(super) fn member_left(of: GroupId, who: UserId) -> common::GroupEvent {
    common::GroupEvent {
        group_id: of.get(),
        actor_user_id: who.get(),
        occurred_at: Some(to_timestamp(at(0))),
        change: Some(common::group_event::Change::MemberLeft(common::MemberLeft { user_id: who.get() })),
    }
}
