//! Posting: gapless seqs, content round trips, idempotent retries, mixed and concurrent
//! batches, slow mode and replies.

use std::collections::BTreeSet;
use std::time::Duration;

use fanfare_core::time::to_timestamp;
use fanfare_proto::common::v1::update::Change;
use futures::future::join_all;

use super::helpers::{
    apply_one, at, delete, edit, event_seq, group, kinds, latest_token, log_of, member_left, message, message_seq,
    message_seqs, new_message, new_post, pin, position, post, react, send, text, totals, user,
};
use crate::domain::ActorRole::Member;
use crate::domain::PinChange::Pin;
use crate::domain::ReactionChange::Add;
use crate::domain::ReactionUpdate::Append;
use crate::domain::updates::message_to_proto;
use crate::domain::{Attachment, Content, LogPosition, MessageText};
use crate::store::{Applied, LogWrite, MessageStore, WriteError};

/// Posts number messages and log entries 1, 2, 3, … per group, move the sender's read
/// marker, and read back exactly as returned (times at microsecond precision).
pub async fn posts_take_gapless_seqs_and_read_back(store: &dyn MessageStore) {
    let chat = group(7);
    let precise = at(1) + chrono::Duration::nanoseconds(123_456_789);
    let first = new_post(apply_one(store, post(chat, user(1), "k1", text("hello")), precise).await);
    assert_eq!((first.message_seq, first.event_seq, first.version), (message_seq(1), event_seq(1), 1));
    assert_eq!(first.created_at, at(1) + chrono::Duration::microseconds(123_456), "kept to the microsecond");
    assert_eq!((first.sender, first.content.text.as_str()), (user(1), "hello"));
    assert_eq!((first.edited_at, first.deleted_at, first.pinned), (None, None, false));
    assert!(first.reactions.is_empty());
    let second = send(store, chat, user(2), "k1", at(2)).await;
    assert_eq!((second.message_seq, second.event_seq), (message_seq(2), event_seq(2)));
    assert_ne!(first.id, second.id);

    assert_eq!(store.get_messages(chat, &message_seqs(&[2, 1])).await.unwrap(), vec![first.clone(), second.clone()]);
    assert_eq!(store.get_messages_by_id(chat, &[second.id, first.id]).await.unwrap(), vec![first, second]);
    let position = position(store, chat).await;
    let last_entry_token = latest_token(store, chat).await;
    assert_eq!(
        position,
        LogPosition {
            group_id: chat,
            last_event_seq: event_seq(2),
            last_message_seq: message_seq(2),
            oldest_retained_event_seq: event_seq(1),
            last_entry_token
        }
    );
    assert_eq!(kinds(&log_of(store, chat).await), ["posted", "posted"]);
    let unread = store.unread_counts(user(2), &[chat]).await.unwrap();
    assert_eq!(unread[0].read_message_seq, message_seq(2), "one's own message is read");
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
        reply_to_message_seq: Some(message_seq(1)),
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
    assert_eq!(message(store, chat, announcement.message_seq.get()).await.content, everyone);
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
    let new_seqs: Vec<i64> =
        [0, 2, 5].iter().map(|index| new_post(outcomes[*index].clone()).message_seq.get()).collect();
    assert_eq!(new_seqs, [4, 5, 6]);
    assert!(
        matches!(&outcomes[1], Ok(Applied::Posted { message, duplicate: true }) if message.message_seq == message_seq(1))
    );
    assert!(matches!(&outcomes[3], Ok(Applied::Edited(message)) if message.message_seq == message_seq(4)));
    assert!(
        matches!(&outcomes[4], Ok(Applied::Posted { message, duplicate: true }) if message.message_seq == message_seq(2))
    );
    assert_eq!(position(store, chat).await.last_event_seq, event_seq(8), "3 posts, 1 edit, 2 retries writing nothing");
}

/// The same key with other content is refused, naming the original, and writes nothing.
pub async fn a_retry_with_other_content_is_a_conflict(store: &dyn MessageStore) {
    let chat = group(1);
    send(store, chat, user(1), "key", at(0)).await;
    let before = position(store, chat).await;
    let changed_text = apply_one(store, post(chat, user(1), "key", text("something else")), at(1)).await;
    let conflict = WriteError::IdempotencyConflict { key: "key".to_owned(), original_seq: message_seq(1) };
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
    assert_eq!(
        outcomes[2],
        Err(WriteError::IdempotencyConflict { key: "twice".to_owned(), original_seq: message_seq(1) })
    );
    let other_sender = match &outcomes[3] {
        Ok(Applied::Posted { message, duplicate: false }) => message.clone(),
        other => panic!("expected a post, got {other:?}"),
    };
    assert_eq!((other_sender.message_seq, other_sender.event_seq), (message_seq(2), event_seq(2)));
    assert_eq!(position(store, chat).await.last_message_seq, message_seq(2));
}

/// A batch mixing groups and kinds numbers each group's entries without a gap, in batch
/// order; refused writes in between take no number; each write sees those before it.
pub async fn a_mixed_batch_is_gapless_and_refused_writes_take_no_seq(store: &dyn MessageStore) {
    let (first, second) = (group(10), group(20));
    let writes = vec![
        post(first, user(1), "a1", text("a1")),
        post(second, user(1), "b1", text("b1")),
        post(first, user(2), "bad-reply", Content { reply_to_message_seq: Some(message_seq(5)), ..text("x") }),
        edit(first, 1, user(2), "not mine"),
        LogWrite::System { source: "groups".to_owned(), outbox_id: 7, event: member_left(first, user(9)) },
        post(first, user(2), "a2", Content { reply_to_message_seq: Some(message_seq(1)), ..text("a2") }),
        react(first, 1, user(3), "👍", Add, Append),
        pin(first, 2, Pin),
        edit(first, 2, user(2), "a2 edited"),
        post(first, user(1), "a1", text("a1")),
        delete(second, 1, user(1), Member),
        post(second, user(1), "b2", text("b2")),
        post(first, user(3), "a3", text("a3")),
    ];
    let outcomes = store.apply(writes, at(0)).await.unwrap().outcomes;
    assert_eq!(outcomes.len(), 13);
    assert_eq!(outcomes[2], Err(WriteError::ReplyTargetNotFound(message_seq(5))));
    assert_eq!(outcomes[3], Err(WriteError::NotSender(message_seq(1))));
    assert_eq!(outcomes[4], Ok(Applied::SystemAppended { event_seq: event_seq(2), duplicate: false }));
    let reacted = Applied::Reacted { totals: totals(&[("👍", 1)]), changed: true, event_seq: Some(event_seq(4)) };
    assert_eq!(outcomes[6], Ok(reacted));
    assert_eq!(outcomes[7], Ok(Applied::Pinned { event_seq: Some(event_seq(5)) }));
    let Ok(Applied::Edited(edited)) = &outcomes[8] else { panic!("expected an edit: {:?}", outcomes[8]) };
    assert_eq!((edited.event_seq, edited.version, edited.pinned), (event_seq(3), 2, true));
    let Ok(Applied::Posted { message: retried, duplicate: true }) = &outcomes[9] else {
        panic!("expected a retry: {:?}", outcomes[9])
    };
    assert_eq!(
        (retried.message_seq, retried.reactions.clone()),
        (message_seq(1), totals(&[("👍", 1)])),
        "as it then stood"
    );
    let posted: Vec<(i64, i64, i64)> = [0, 1, 5, 11, 12]
        .iter()
        .map(|index| match &outcomes[*index] {
            Ok(Applied::Posted { message, duplicate: false }) => {
                (message.group_id.get(), message.message_seq.get(), message.event_seq.get())
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
    assert_eq!(
        positions.iter().map(|p| (p.last_event_seq.get(), p.last_message_seq.get())).collect::<Vec<_>>(),
        [(7, 3), (3, 2)]
    );
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
    let message_seqs: BTreeSet<i64> = messages.iter().map(|message| message.message_seq.get()).collect();
    let event_seqs: BTreeSet<i64> = messages.iter().map(|message| message.event_seq.get()).collect();
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
            per_group[(message.group_id.get() - 1) as usize].push((message.message_seq.get(), message.event_seq.get()));
        }
    }
    for (index, mut taken) in per_group.into_iter().enumerate() {
        taken.sort_unstable();
        let count = taken.len() as i64;
        assert!(count > 0);
        let expected: Vec<(i64, i64)> = (1..=count).map(|seq| (seq, seq)).collect();
        assert_eq!(taken, expected, "group {}", index + 1);
        assert_eq!(position(store, groups[index]).await.last_event_seq, event_seq(count));
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
    assert_eq!(position(store, community).await.last_message_seq, message_seq(3), "refusals took no seq");

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
    apply_one(store, delete(chat, 1, user(1), Member), at(1)).await.unwrap();
    let reply = |key: &str, target: i64| {
        post(chat, user(2), key, Content { reply_to_message_seq: Some(message_seq(target)), ..text(key) })
    };
    assert_eq!(apply_one(store, reply("r0", 2), at(2)).await, Err(WriteError::ReplyTargetNotFound(message_seq(2))));
    assert_eq!(apply_one(store, reply("r1", 0), at(2)).await, Err(WriteError::ReplyTargetNotFound(message_seq(0))));
    let to_tombstone = new_post(apply_one(store, reply("r2", 1), at(2)).await);
    assert_eq!(to_tombstone.content.reply_to_message_seq, Some(message_seq(1)));
    assert_eq!(
        apply_one(
            store,
            post(group(9), user(2), "r3", Content { reply_to_message_seq: Some(message_seq(1)), ..text("x") }),
            at(2)
        )
        .await,
        Err(WriteError::ReplyTargetNotFound(message_seq(1))),
        "not another group's"
    );
}
