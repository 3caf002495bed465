//! Reactions and pins.

use fanfare_proto::common::v1::update::Change;

use super::helpers::{
    apply_one, at, delete, event_seq, group, kinds, log_of, message, message_seq, message_seqs, pin, position, react,
    send, totals, user,
};
use crate::domain::ActorRole::Member;
use crate::domain::PinChange::{Pin, Unpin};
use crate::domain::ReactionChange::{Add, Remove};
use crate::domain::ReactionUpdate::{Append, Coalesce};
use crate::store::{Applied, LogWrite, MessageStore, WriteError};

/// Adding a reaction twice or removing one never added changes nothing; totals are per
/// emoji, ordered by emoji, and read back with the message.
pub async fn reactions_add_and_remove_idempotently(store: &dyn MessageStore) {
    let chat = group(1);
    send(store, chat, user(1), "m", at(0)).await;
    let reacted =
        |pairs: &[(&str, i64)], changed: bool| Ok(Applied::Reacted { totals: totals(pairs), changed, event_seq: None });
    assert_eq!(
        apply_one(store, react(chat, 1, user(2), "👍", Add, Coalesce), at(1)).await,
        reacted(&[("👍", 1)], true)
    );
    assert_eq!(
        apply_one(store, react(chat, 1, user(2), "👍", Add, Coalesce), at(2)).await,
        reacted(&[("👍", 1)], false)
    );
    assert_eq!(
        apply_one(store, react(chat, 1, user(3), "👍", Add, Coalesce), at(3)).await,
        reacted(&[("👍", 2)], true)
    );
    let both = reacted(&[("❤️", 1), ("👍", 2)], true);
    assert_eq!(apply_one(store, react(chat, 1, user(3), "❤️", Add, Coalesce), at(4)).await, both);
    assert_eq!(message(store, chat, 1).await.reactions, totals(&[("❤️", 1), ("👍", 2)]));
    assert_eq!(
        apply_one(store, react(chat, 1, user(3), "❤️", Remove, Coalesce), at(5)).await,
        reacted(&[("👍", 2)], true)
    );
    assert_eq!(
        apply_one(store, react(chat, 1, user(3), "❤️", Remove, Coalesce), at(6)).await,
        reacted(&[("👍", 2)], false)
    );
    assert_eq!(
        apply_one(store, react(chat, 1, user(2), "👍", Remove, Coalesce), at(7)).await,
        reacted(&[("👍", 1)], true)
    );
    assert_eq!(message(store, chat, 1).await.reactions, totals(&[("👍", 1)]));
    assert_eq!(position(store, chat).await.last_event_seq, event_seq(1), "no update was asked for");
}

/// A message carries at most `max_distinct_emojis` different emojis; more of an emoji it
/// already carries is always fine.
pub async fn reactions_are_limited_to_distinct_emojis(store: &dyn MessageStore) {
    let chat = group(1);
    send(store, chat, user(1), "m", at(0)).await;
    apply_one(store, react(chat, 1, user(1), "a", Add, Coalesce), at(1)).await.unwrap();
    apply_one(store, react(chat, 1, user(1), "b", Add, Coalesce), at(1)).await.unwrap();
    let refused = apply_one(store, react(chat, 1, user(2), "c", Add, Coalesce), at(2)).await;
    assert_eq!(refused, Err(WriteError::TooManyEmojis { message_seq: message_seq(1), limit: 2 }));
    let more_of_a = apply_one(store, react(chat, 1, user(2), "a", Add, Coalesce), at(2)).await;
    assert!(matches!(more_of_a, Ok(Applied::Reacted { changed: true, .. })), "{more_of_a:?}");
    apply_one(store, react(chat, 1, user(1), "b", Remove, Coalesce), at(3)).await.unwrap();
    let now_fits = apply_one(store, react(chat, 1, user(2), "c", Add, Coalesce), at(4)).await;
    let expected = Applied::Reacted { totals: totals(&[("a", 2), ("c", 1)]), changed: true, event_seq: None };
    assert_eq!(now_fits, Ok(expected));
}

/// A reaction appends `ReactionsChanged` only when asked and when it changed something;
/// `EmitReactionTotals` appends the current totals.
pub async fn reaction_updates_are_appended_only_when_asked(store: &dyn MessageStore) {
    let chat = group(1);
    send(store, chat, user(1), "m", at(0)).await;
    let emitted = apply_one(store, react(chat, 1, user(2), "👍", Add, Append), at(1)).await;
    assert_eq!(
        emitted,
        Ok(Applied::Reacted { totals: totals(&[("👍", 1)]), changed: true, event_seq: Some(event_seq(2)) })
    );
    let unchanged = apply_one(store, react(chat, 1, user(2), "👍", Add, Append), at(2)).await;
    assert_eq!(unchanged, Ok(Applied::Reacted { totals: totals(&[("👍", 1)]), changed: false, event_seq: None }));
    apply_one(store, react(chat, 1, user(3), "😂", Add, Coalesce), at(3)).await.unwrap();
    let flushed =
        apply_one(store, LogWrite::EmitReactionTotals { group: chat, message_seq: message_seq(1) }, at(4)).await;
    assert_eq!(flushed, Ok(Applied::ReactionTotalsEmitted { event_seq: event_seq(3) }));

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
    assert_eq!(apply_one(store, pin(chat, 1, Pin), at(1)).await, Ok(Applied::Pinned { event_seq: Some(event_seq(4)) }));
    assert_eq!(apply_one(store, pin(chat, 1, Pin), at(1)).await, Ok(Applied::Pinned { event_seq: None }));
    assert_eq!(apply_one(store, pin(chat, 2, Pin), at(1)).await, Ok(Applied::Pinned { event_seq: Some(event_seq(5)) }));
    let full = WriteError::PinLimit { group: chat, limit: 2 };
    assert_eq!(apply_one(store, pin(chat, 3, Pin), at(1)).await, Err(full));
    assert_eq!(
        apply_one(store, pin(chat, 1, Unpin), at(2)).await,
        Ok(Applied::Pinned { event_seq: Some(event_seq(6)) })
    );
    assert_eq!(apply_one(store, pin(chat, 1, Unpin), at(2)).await, Ok(Applied::Pinned { event_seq: None }));
    assert_eq!(apply_one(store, pin(chat, 3, Pin), at(3)).await, Ok(Applied::Pinned { event_seq: Some(event_seq(7)) }));
    let pinned: Vec<bool> =
        store.get_messages(chat, &message_seqs(&[1, 2, 3])).await.unwrap().iter().map(|m| m.pinned).collect();
    assert_eq!(pinned, [false, true, true]);

    apply_one(store, delete(chat, 2, user(1), Member), at(4)).await.unwrap();
    assert_eq!(apply_one(store, pin(chat, 1, Pin), at(5)).await, Ok(Applied::Pinned { event_seq: Some(event_seq(9)) }));
    let updates = log_of(store, chat).await;
    assert_eq!(kinds(&updates[3..]), ["pinned", "pinned", "unpinned", "pinned", "deleted", "pinned"]);
    let Some(Change::MessageUnpinned(unpinned)) = &updates[5].change else { unreachable!("checked above") };
    assert_eq!((unpinned.message_seq, unpinned.unpinned_by_user_id), (1, 1));
}
