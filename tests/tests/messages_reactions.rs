//! Reactions and pins: one reaction per user per emoji, the distinct-emoji limit, one
//! `ReactionsChanged` per change in small groups and coalesced updates in large ones
//! (docs/messages.md "Reactions in large groups"), and pins for moderators up to a limit.

use fanfare_proto::common::v1::GroupKind;
use fanfare_proto::common::v1::update::Change;
use fanfare_proto::messages::v1 as pb;
use fanfare_testkit::{Storage, as_user};
use fanfare_tests::groups::{expect_precondition, expect_quota_failure};
use fanfare_tests::messages::{
    Client, all_updates, get_one, send_ok, snapshot, start, start_with, totals, wait_for_update,
};
use fanfare_tests::{expect_code, on_every_storage};
use tokio::task::JoinSet;
use tonic::{Code, Status};

on_every_storage!(
    reactions_add_remove_and_repeat_without_effect,
    a_message_carries_a_limited_number_of_different_emojis,
    deleted_and_missing_messages_take_no_reaction,
    large_groups_coalesce_reaction_updates,
    a_large_groups_reaction_changes_totals_at_once_and_logs_nothing_before_the_window,
    pins_are_for_moderators_and_limited,
);

type Totals = Vec<(String, i64)>;

async fn react(
    client: &mut Client,
    user: i64,
    group_id: i64,
    seq: i64,
    emoji: &str,
    add: bool,
) -> Result<Totals, Status> {
    let reactions = if add {
        let request = pb::AddReactionRequest { group_id, message_seq: seq, emoji: emoji.to_owned() };
        client.add_reaction(as_user(user, request)).await?.into_inner().reactions
    } else {
        let request = pb::RemoveReactionRequest { group_id, message_seq: seq, emoji: emoji.to_owned() };
        client.remove_reaction(as_user(user, request)).await?.into_inner().reactions
    };
    Ok(totals(&reactions))
}

fn pairs(expected: &[(&str, i64)]) -> Totals {
    expected.iter().map(|(emoji, count)| ((*emoji).to_owned(), *count)).collect()
}

/// The totals carried by each `ReactionsChanged` update of the log, in order.
async fn reaction_updates(client: &mut Client, group_id: i64) -> Vec<Totals> {
    let updates = all_updates(client, 1, group_id).await;
    updates
        .iter()
        .filter_map(|update| match &update.change {
            Some(Change::ReactionsChanged(changed)) => Some(totals(&changed.reactions)),
            _ => None,
        })
        .collect()
}

async fn reactions_add_remove_and_repeat_without_effect(storage: Storage) {
    let mut fixture = start(storage).await;
    let group_id = fixture.group(GroupKind::Community, 1, &[2, 3]).await;
    let client = &mut fixture.messages;
    let seq = send_ok(client, 1, group_id, "k", "react to me").await.message_seq;

    assert_eq!(react(client, 2, group_id, seq, "👍", true).await.expect("added"), pairs(&[("👍", 1)]));
    assert_eq!(react(client, 3, group_id, seq, "👍", true).await.expect("added"), pairs(&[("👍", 2)]));
    assert_eq!(react(client, 3, group_id, seq, "🎉", true).await.expect("added"), pairs(&[("🎉", 1), ("👍", 2)]));
    let before_repeats = snapshot(client, 1, group_id).await;
    assert_eq!(react(client, 2, group_id, seq, "👍", true).await.expect("again"), pairs(&[("🎉", 1), ("👍", 2)]));
    assert_eq!(
        react(client, 2, group_id, seq, "🎉", false).await.expect("never added"),
        pairs(&[("🎉", 1), ("👍", 2)])
    );
    assert_eq!(snapshot(client, 1, group_id).await, before_repeats, "repeats change nothing and log nothing");
    assert_eq!(react(client, 3, group_id, seq, "🎉", false).await.expect("removed"), pairs(&[("👍", 2)]));

    let logged = reaction_updates(client, group_id).await;
    let expected = vec![pairs(&[("👍", 1)]), pairs(&[("👍", 2)]), pairs(&[("🎉", 1), ("👍", 2)]), pairs(&[("👍", 2)])];
    assert_eq!(logged, expected, "a small group logs every change with its totals");
    assert_eq!(totals(&get_one(client, 2, group_id, seq).await.reactions), pairs(&[("👍", 2)]));
}

async fn a_message_carries_a_limited_number_of_different_emojis(storage: Storage) {
    let mut fixture = start_with(storage, |config| config.limits.max_distinct_emojis = 2).await;
    let group_id = fixture.group(GroupKind::Community, 1, &[2, 3]).await;
    let client = &mut fixture.messages;
    let seq = send_ok(client, 1, group_id, "k", "react to me").await.message_seq;
    react(client, 2, group_id, seq, "👍", true).await.expect("first emoji");
    react(client, 2, group_id, seq, "🎉", true).await.expect("second emoji");
    let before = snapshot(client, 1, group_id).await;

    let refused = expect_quota_failure(react(client, 3, group_id, seq, "🔥", true).await);
    assert!(refused.message().contains('2'), "the limit is named: {}", refused.message());
    assert_eq!(snapshot(client, 1, group_id).await, before, "the refused reaction wrote nothing");
    let joined = react(client, 3, group_id, seq, "👍", true).await.expect("an emoji already there is fine");
    assert_eq!(joined, pairs(&[("🎉", 1), ("👍", 2)]));
}

async fn deleted_and_missing_messages_take_no_reaction(storage: Storage) {
    let mut fixture = start(storage).await;
    let group_id = fixture.group(GroupKind::Community, 1, &[2]).await;
    let client = &mut fixture.messages;
    let seq = send_ok(client, 2, group_id, "k", "soon gone").await.message_seq;
    react(client, 1, group_id, seq, "👍", true).await.expect("reacted");
    let delete = pb::DeleteMessageRequest { group_id, message_seq: seq };
    client.delete_message(as_user(2, delete)).await.expect("deleted");
    assert!(get_one(client, 1, group_id, seq).await.reactions.is_empty(), "a tombstone keeps no reactions");

    expect_precondition(react(client, 1, group_id, seq, "🔥", true).await, "DELETED");
    expect_code(react(client, 1, group_id, 99, "🔥", true).await, Code::NotFound);
    expect_code(react(client, 1, group_id, 99, "🔥", false).await, Code::NotFound);
}

async fn large_groups_coalesce_reaction_updates(storage: Storage) {
    let mut fixture = start_with(storage, |config| {
        config.limits.reaction_coalesce_above_members = 0;
        config.limits.reaction_coalesce_window_ms = 200;
    })
    .await;
    let fans: Vec<i64> = (100..140).collect();
    let group_id = fixture.group(GroupKind::Community, 1, &fans).await;
    let seq = send_ok(&mut fixture.messages, 1, group_id, "k", "viral").await.message_seq;

    let mut taps = JoinSet::new();
    for fan in fans.iter().copied() {
        let mut client = fixture.messages.clone();
        taps.spawn(async move { react(&mut client, fan, group_id, seq, "🔥", true).await });
    }
    while let Some(tapped) = taps.join_next().await {
        let totals_now = tapped.expect("a tap completes").expect("a reaction is accepted");
        assert!(!totals_now.is_empty(), "the totals change at once");
    }
    react(&mut fixture.messages, 100, group_id, seq, "🔥", false).await.expect("one fan changes their mind");

    let client = &mut fixture.messages;
    let final_totals = pairs(&[("🔥", 39)]);
    wait_for_update(client, 1, group_id, |update| match &update.change {
        Some(Change::ReactionsChanged(changed)) => totals(&changed.reactions) == final_totals,
        _ => false,
    })
    .await;
    let logged = reaction_updates(client, group_id).await;
    assert!(logged.len() < 41, "41 reaction changes, {} updates: coalesced", logged.len());
    assert_eq!(logged.last(), Some(&final_totals), "the last update carries the final totals");
    assert_eq!(totals(&get_one(client, 1, group_id, seq).await.reactions), final_totals);
}

async fn a_large_groups_reaction_changes_totals_at_once_and_logs_nothing_before_the_window(storage: Storage) {
    // A window far longer than the test: its first flush (at start) has passed, the next
    // one does not come while the test runs.
    let mut fixture = start_with(storage, |config| {
        config.limits.reaction_coalesce_above_members = 1;
        config.limits.reaction_coalesce_window_ms = 600_000;
    })
    .await;
    let small = fixture.group(GroupKind::Community, 1, &[]).await;
    let large = fixture.group(GroupKind::Community, 1, &[2, 3]).await;
    let client = &mut fixture.messages;
    let in_small = send_ok(client, 1, small, "k", "one member").await.message_seq;
    let in_large = send_ok(client, 1, large, "k", "three members").await.message_seq;
    let before = snapshot(client, 1, large).await;

    assert_eq!(react(client, 2, large, in_large, "🔥", true).await.expect("reacted"), pairs(&[("🔥", 1)]));
    assert_eq!(react(client, 3, large, in_large, "🔥", true).await.expect("reacted"), pairs(&[("🔥", 2)]));
    assert_eq!(totals(&get_one(client, 1, large, in_large).await.reactions), pairs(&[("🔥", 2)]), "stored at once");
    assert_eq!(snapshot(client, 1, large).await.latest_event_seq, before.latest_event_seq, "no update yet");

    react(client, 1, small, in_small, "🔥", true).await.expect("reacted");
    assert_eq!(reaction_updates(client, small).await, vec![pairs(&[("🔥", 1)])], "at or below the threshold: at once");
}

async fn pin(client: &mut Client, user: i64, group_id: i64, seq: i64, pinned: bool) -> Result<(), Status> {
    if pinned {
        client.pin_message(as_user(user, pb::PinMessageRequest { group_id, message_seq: seq })).await.map(drop)
    } else {
        client.unpin_message(as_user(user, pb::UnpinMessageRequest { group_id, message_seq: seq })).await.map(drop)
    }
}

async fn pins_are_for_moderators_and_limited(storage: Storage) {
    let mut fixture = start_with(storage, |config| config.limits.max_pins = 2).await;
    let group_id = fixture.group(GroupKind::Community, 1, &[2]).await;
    let client = &mut fixture.messages;
    for key in ["a", "b", "c"] {
        send_ok(client, 2, group_id, key, "pin-worthy").await;
    }
    expect_code(pin(client, 2, group_id, 1, true).await, Code::PermissionDenied);
    pin(client, 1, group_id, 1, true).await.expect("the owner pins");
    pin(client, 1, group_id, 2, true).await.expect("a second pin");
    assert!(get_one(client, 2, group_id, 1).await.pinned);

    let before = snapshot(client, 1, group_id).await;
    expect_quota_failure(pin(client, 1, group_id, 3, true).await);
    pin(client, 1, group_id, 1, true).await.expect("pinning a pinned message succeeds");
    assert_eq!(snapshot(client, 1, group_id).await, before, "neither wrote anything");
    expect_code(pin(client, 2, group_id, 1, false).await, Code::PermissionDenied);
    expect_code(pin(client, 1, group_id, 9, true).await, Code::NotFound);

    let delete = pb::DeleteMessageRequest { group_id, message_seq: 3 };
    client.delete_message(as_user(2, delete)).await.expect("deleted");
    expect_precondition(pin(client, 1, group_id, 3, true).await, "DELETED");
    send_ok(client, 2, group_id, "d", "pin-worthy too").await;

    pin(client, 1, group_id, 1, false).await.expect("the owner unpins");
    pin(client, 1, group_id, 4, true).await.expect("room for another pin");
    assert!(!get_one(client, 2, group_id, 1).await.pinned);

    let updates = all_updates(client, 1, group_id).await;
    let pins: Vec<(&str, i64, i64)> = updates
        .iter()
        .filter_map(|update| match &update.change {
            Some(Change::MessagePinned(pinned)) => Some(("pinned", pinned.message_seq, pinned.pinned_by_user_id)),
            Some(Change::MessageUnpinned(unpinned)) => {
                Some(("unpinned", unpinned.message_seq, unpinned.unpinned_by_user_id))
            }
            _ => None,
        })
        .collect();
    assert_eq!(pins, vec![("pinned", 1, 1), ("pinned", 2, 1), ("unpinned", 1, 1), ("pinned", 4, 1)]);
}
