//! Reading: message pages, the log and its positions, read markers and unread counts.

use fanfare_core::ids::{EventSeq, MessageSeq};
use fanfare_core::paging::PageSize;
use fanfare_core::time::to_timestamp;
use fanfare_proto::common::v1 as common;
use prost::Message as _;

use super::helpers::{
    apply_one, at, delete, event_seq, group, latest_token, message_seq, message_seqs, post, send, seqs, text, user,
};
use crate::domain::ActorRole::Member;
use crate::domain::{Content, LogPosition, Unread};
use crate::store::{Direction, MessageStore};

/// Listings page by message_seq after (forward) or before (backward) an anchor, in the
/// direction of travel, with one extra row when there is more.
pub async fn list_messages_pages_both_ways(store: &dyn MessageStore) {
    let chat = group(3);
    for index in 1..=5 {
        send(store, chat, user(1), &format!("m{index}"), at(index)).await;
    }
    send(store, group(4), user(1), "elsewhere", at(0)).await;
    let list = |direction: Direction, anchor: Option<i64>, limit: u32| async move {
        seqs(&store.list_messages(chat, direction, anchor.map(message_seq), None, PageSize::new(limit)).await.unwrap())
    };
    assert_eq!(list(Direction::Forward, None, 2).await, [1, 2, 3]);
    assert_eq!(list(Direction::Forward, Some(3), 2).await, [4, 5]);
    assert_eq!(list(Direction::Forward, Some(5), 2).await, Vec::<i64>::new());
    assert_eq!(list(Direction::Backward, None, 2).await, [5, 4, 3]);
    assert_eq!(list(Direction::Backward, Some(3), 5).await, [2, 1]);
    assert_eq!(list(Direction::Backward, Some(1), 5).await, Vec::<i64>::new());
    let page =
        store.list_messages(chat, Direction::Forward, Some(message_seq(1)), None, PageSize::new(1)).await.unwrap();
    assert_eq!(page, store.get_messages(chat, &message_seqs(&[2, 3])).await.unwrap(), "whole messages");
}

/// `not_before` hides messages created earlier, in both directions.
pub async fn list_messages_skips_messages_before_not_before(store: &dyn MessageStore) {
    let chat = group(3);
    for (index, seconds) in [0, 10, 20, 30].into_iter().enumerate() {
        send(store, chat, user(1), &format!("m{index}"), at(seconds)).await;
    }
    let list = |direction: Direction, anchor: Option<i64>| async move {
        let listed = store
            .list_messages(chat, direction, anchor.map(message_seq), Some(at(10)), PageSize::new(10))
            .await
            .unwrap();
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
    assert_eq!(
        store.get_messages(chat, &message_seqs(&[9, 2, 0, 1, 2])).await.unwrap(),
        vec![first.clone(), second.clone()]
    );
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
    let first_page = store.get_updates(chat, EventSeq::ZERO, PageSize::new(2)).await.unwrap();
    let event_seqs: Vec<i64> = first_page.updates.iter().map(|update| update.event_seq.get()).collect();
    assert_eq!(event_seqs, [1, 2]);
    assert_eq!(
        (first_page.position.last_event_seq, first_page.position.last_message_seq),
        (event_seq(5), message_seq(5))
    );
    let rest = store.get_updates(chat, event_seq(2), PageSize::new(10)).await.unwrap();
    let decoded: Vec<common::Update> =
        rest.updates.iter().map(|update| common::Update::decode(update.payload.as_ref()).unwrap()).collect();
    assert_eq!(decoded.iter().map(|update| update.event_seq).collect::<Vec<_>>(), [3, 4, 5]);
    assert_eq!(decoded[0].occurred_at, Some(to_timestamp(at(3))));
    assert!(rest.updates.iter().all(|update| update.group_id == chat));
    assert!(store.get_updates(chat, event_seq(5), PageSize::new(10)).await.unwrap().updates.is_empty());
    let unknown = store.get_updates(group(99), EventSeq::ZERO, PageSize::new(10)).await.unwrap();
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
        last_event_seq: event_seq(last),
        last_message_seq: message_seq(last),
        oldest_retained_event_seq: event_seq(1),
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
    let mark = |of, who, seq| async move { store.mark_read(of, who, message_seq(seq)).await.unwrap().get() };
    assert_eq!(mark(chat, user(2), 2).await, 2);
    assert_eq!(mark(chat, user(2), 1).await, 2, "never backwards");
    assert_eq!(mark(chat, user(2), 10).await, 3, "clamped to the latest message");
    assert_eq!(mark(chat, user(3), 0).await, 0);
    assert_eq!(mark(group(9), user(2), 5).await, 0, "a group without messages");
    assert_eq!(store.unread_counts(user(2), &[chat]).await.unwrap()[0].read_message_seq, message_seq(3));
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
    apply_one(store, delete(chat, 7, user(1), Member), at(1)).await.unwrap();
    let unread = |marker: i64, messages: i64, mentions: i64| Unread {
        group_id: chat,
        unread_messages: messages,
        unread_mentions: mentions,
        last_message_seq: message_seq(7),
        read_message_seq: message_seq(marker),
    };
    assert_eq!(store.unread_counts(user(2), &[chat]).await.unwrap(), vec![unread(2, 5, 3)]);
    assert_eq!(store.unread_counts(user(3), &[chat]).await.unwrap(), vec![unread(0, 7, 4)]);
    assert_eq!(store.unread_counts(user(1), &[chat]).await.unwrap(), vec![unread(7, 0, 0)]);
    store.mark_read(chat, user(3), message_seq(4)).await.unwrap();
    let both = store.unread_counts(user(3), &[group(2), chat, group(2)]).await.unwrap();
    let empty = Unread {
        group_id: group(2),
        unread_messages: 0,
        unread_mentions: 0,
        last_message_seq: MessageSeq::ZERO,
        read_message_seq: MessageSeq::ZERO,
    };
    assert_eq!(both, vec![empty, unread(4, 3, 2), empty]);
}
