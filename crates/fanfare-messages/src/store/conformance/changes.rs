//! Changing messages: edits, deletes, purges, what tombstones and missing messages refuse,
//! and system events.

use std::time::Duration;

use chrono::{DateTime, Utc};
use fanfare_core::paging::PageSize;
use fanfare_proto::common::v1 as common;
use fanfare_proto::common::v1::update::Change;
use prost::Message as _;

use super::helpers::{
    apply_one, at, delete, edit, event_seq, group, kinds, log_of, member_left, message, message_seq, message_seqs,
    new_post, pin, position, post, react, send, text, user,
};
use crate::domain::ActorRole::{Member, Moderator};
use crate::domain::PinChange::Pin;
use crate::domain::ReactionChange::{Add, Remove};
use crate::domain::ReactionUpdate::{Append, Coalesce};
use crate::domain::updates::message_to_proto;
use crate::domain::{Attachment, Content, MAX_PURGED_PER_UPDATE};
use crate::store::{Applied, LogWrite, MessageStore, WriteError};

/// Only the sender edits, while the message is live and younger than the window; each
/// edit bumps the version and logs the message after it.
pub async fn edits_need_the_sender_a_live_message_and_the_window(store: &dyn MessageStore) {
    let chat = group(1);
    let original = send(store, chat, user(1), "typo", at(0)).await;
    assert_eq!(
        apply_one(store, edit(chat, 1, user(2), "hijack"), at(1)).await,
        Err(WriteError::NotSender(message_seq(1)))
    );
    let Ok(Applied::Edited(edited)) = apply_one(store, edit(chat, 1, user(1), "fixed"), at(10)).await else {
        panic!("expected an edit")
    };
    assert_eq!(edited.content.text.as_str(), "fixed");
    assert_eq!((edited.version, edited.edited_at, edited.created_at), (2, Some(at(10)), original.created_at));
    assert_eq!(
        (edited.message_seq, edited.event_seq, edited.id),
        (message_seq(1), event_seq(1), original.id),
        "the same message"
    );
    assert_eq!(message(store, chat, 1).await, edited);
    assert!(matches!(apply_one(store, edit(chat, 1, user(1), "again"), at(59)).await, Ok(Applied::Edited(_))));
    let closed = WriteError::EditWindowClosed { message_seq: message_seq(1), window: Duration::from_secs(60) };
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
    apply_one(store, react(chat, 1, user(2), "🔥", Add, Coalesce), at(1)).await.unwrap();
    apply_one(store, pin(chat, 1, Pin), at(1)).await.unwrap();
    assert_eq!(
        apply_one(store, delete(chat, 1, user(2), Member), at(2)).await,
        Err(WriteError::NotSender(message_seq(1)))
    );

    let Ok(Applied::Deleted(tombstone)) = apply_one(store, delete(chat, 1, user(2), Moderator), at(3)).await else {
        panic!("a moderator deletes")
    };
    assert_eq!(tombstone.content, Content::default());
    assert_eq!((tombstone.deleted_at, tombstone.pinned, tombstone.reactions.clone()), (Some(at(3)), false, vec![]));
    assert_eq!((tombstone.id, tombstone.sender, tombstone.created_at), (original.id, user(1), original.created_at));
    assert_eq!(message(store, chat, 1).await, tombstone);
    let before = position(store, chat).await;
    assert_eq!(
        apply_one(store, delete(chat, 1, user(1), Member), at(4)).await,
        Ok(Applied::Deleted(tombstone.clone()))
    );
    assert_eq!(
        apply_one(store, delete(chat, 1, user(2), Member), at(4)).await,
        Err(WriteError::NotSender(message_seq(1)))
    );
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
    apply_one(store, delete(chat, 4, user(1), Member), at(21)).await.unwrap();
    let purge = |since: Option<DateTime<Utc>>| LogWrite::Purge { group: chat, user: user(1), since, actor: user(9) };

    let recent = apply_one(store, purge(Some(at(5))), at(30)).await;
    assert_eq!(recent, Ok(Applied::Purged { message_seqs: vec![message_seq(2)], event_seq: Some(event_seq(6)) }));
    let everything = apply_one(store, purge(None), at(31)).await;
    assert_eq!(everything, Ok(Applied::Purged { message_seqs: vec![message_seq(1)], event_seq: Some(event_seq(7)) }));
    assert_eq!(
        apply_one(store, purge(None), at(32)).await,
        Ok(Applied::Purged { message_seqs: vec![], event_seq: None })
    );
    let nobody = LogWrite::Purge { group: chat, user: user(5), since: None, actor: user(9) };
    assert_eq!(apply_one(store, nobody, at(32)).await, Ok(Applied::Purged { message_seqs: vec![], event_seq: None }));

    let messages = store.get_messages(chat, &message_seqs(&[1, 2, 3, 4])).await.unwrap();
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
    let posted = i64::try_from(count).unwrap();
    let (last, after_posts) = (event_seq(posted + 3), event_seq(posted));
    let Ok(Applied::Purged { message_seqs, event_seq }) = apply_one(store, purge, at(1)).await else {
        panic!("a purge")
    };
    assert_eq!((message_seqs.len(), event_seq), (count, Some(last)));
    let read = store.get_updates(chat, after_posts, PageSize::new(10)).await.unwrap();
    let listed: Vec<Vec<i64>> = read
        .updates
        .iter()
        .map(|stored| match common::Update::decode(stored.payload.as_ref()).expect("decodable").change {
            Some(Change::MessagesPurged(purged)) => purged.message_seqs,
            other => panic!("a purge update: {other:?}"),
        })
        .collect();
    assert_eq!(listed.iter().map(Vec::len).collect::<Vec<_>>(), [MAX_PURGED_PER_UPDATE, MAX_PURGED_PER_UPDATE, 1]);
    assert_eq!(listed.concat(), (1..=posted).collect::<Vec<_>>());
}

/// Tombstones refuse edits, reactions and pins.
pub async fn deleted_messages_refuse_edits_reactions_and_pins(store: &dyn MessageStore) {
    let chat = group(1);
    send(store, chat, user(1), "m", at(0)).await;
    apply_one(store, delete(chat, 1, user(1), Member), at(1)).await.unwrap();
    let before = position(store, chat).await;
    assert_eq!(apply_one(store, edit(chat, 1, user(1), "x"), at(2)).await, Err(WriteError::Deleted(message_seq(1))));
    assert_eq!(
        apply_one(store, react(chat, 1, user(2), "👍", Add, Append), at(2)).await,
        Err(WriteError::Deleted(message_seq(1)))
    );
    assert_eq!(
        apply_one(store, react(chat, 1, user(2), "👍", Remove, Append), at(2)).await,
        Err(WriteError::Deleted(message_seq(1)))
    );
    assert_eq!(apply_one(store, pin(chat, 1, Pin), at(2)).await, Err(WriteError::Deleted(message_seq(1))));
    assert_eq!(position(store, chat).await, before);
    // The coalescer may still flush a tombstone's totals: it has none left.
    let flushed =
        apply_one(store, LogWrite::EmitReactionTotals { group: chat, message_seq: message_seq(1) }, at(3)).await;
    assert_eq!(flushed, Ok(Applied::ReactionTotalsEmitted { event_seq: before.last_event_seq.next() }));
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
    let missing = WriteError::MessageNotFound { group: chat, message_seq: message_seq(99) };
    let writes = vec![
        edit(chat, 99, user(1), "x"),
        delete(chat, 99, user(1), Moderator),
        react(chat, 99, user(1), "👍", Add, Append),
        LogWrite::EmitReactionTotals { group: chat, message_seq: message_seq(99) },
        pin(chat, 99, Pin),
    ];
    let outcomes = store.apply(writes, at(1)).await.unwrap().outcomes;
    assert_eq!(outcomes, vec![Err(missing); 5]);
    let elsewhere = apply_one(store, edit(group(2), 1, user(1), "x"), at(1)).await;
    assert_eq!(elsewhere, Err(WriteError::MessageNotFound { group: group(2), message_seq: message_seq(1) }));
    assert_eq!(position(store, chat).await.last_event_seq, event_seq(1));
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
            Ok(Applied::SystemAppended { event_seq: event_seq(2), duplicate: false }),
            Ok(Applied::SystemAppended { event_seq: event_seq(2), duplicate: true }),
            Ok(Applied::SystemAppended { event_seq: event_seq(3), duplicate: false }),
        ]
    );
    assert_eq!(
        apply_one(store, system(41), at(2)).await,
        Ok(Applied::SystemAppended { event_seq: event_seq(2), duplicate: true })
    );
    let updates = log_of(store, chat).await;
    assert_eq!(kinds(&updates), ["posted", "group_event", "group_event"]);
    assert_eq!(updates[1].change, Some(Change::GroupEvent(event.clone())));
    let counters = position(store, chat).await;
    assert_eq!(
        (counters.last_event_seq, counters.last_message_seq),
        (event_seq(3), message_seq(1)),
        "events are not messages"
    );

    // Another content under a taken (source, outbox id): refused, within a batch or across.
    let forged = member_left(chat, user(3));
    assert_eq!(
        apply_one(store, from("groups", 41, &forged), at(3)).await,
        Err(WriteError::SystemEventConflict { origin: "groups".to_owned(), outbox_id: 41, original_seq: event_seq(2) })
    );
    let outcomes = store.apply(vec![system(43), from("groups", 43, &forged)], at(3)).await.unwrap().outcomes;
    assert_eq!(
        outcomes,
        vec![
            Ok(Applied::SystemAppended { event_seq: event_seq(4), duplicate: false }),
            Err(WriteError::SystemEventConflict {
                origin: "groups".to_owned(),
                outbox_id: 43,
                original_seq: event_seq(4)
            }),
        ]
    );
    // Outbox ids are per source: another source's 41 is its own event.
    assert_eq!(
        apply_one(store, from("billing", 41, &event), at(4)).await,
        Ok(Applied::SystemAppended { event_seq: event_seq(5), duplicate: false })
    );
    assert_eq!(position(store, chat).await.last_event_seq, event_seq(5), "refused repeats appended nothing");
}
