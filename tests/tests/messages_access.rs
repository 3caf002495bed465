//! Who may do what, as the groups service says and docs/messages.md "Who may do what"
//! records: membership changes relayed into the log invalidate the cached membership (the
//! next call is refused or allowed accordingly), strangers and unknown groups are refused,
//! and history hidden from new members stays hidden.

use fanfare_core::status::ErrorReason;
use fanfare_proto::common::v1::group_event::Change as GroupChange;
use fanfare_proto::common::v1::{GroupKind, Role};
use fanfare_proto::groups::v1 as groups_pb;
use fanfare_proto::messages::v1 as pb;
use fanfare_testkit::{Storage, as_user};
use fanfare_tests::groups::{add, seconds_from_now, set_role};
use fanfare_tests::messages::{
    Client, get_by_seq, history, is_group_event, send, send_ok, start, unread, wait_for_update,
};
use fanfare_tests::{error_metadata, expect_code, expect_reason, on_every_storage};
use tonic::Code;

on_every_storage!(
    a_banned_member_is_refused_from_the_ban_on,
    a_removed_member_is_refused_until_added_again,
    a_muted_member_is_refused_until_unmuted,
    a_promotion_grants_moderation_at_once,
    moderators_act_only_on_the_messages_of_those_they_outrank,
    strangers_are_refused_and_private_chats_stay_hidden,
    history_hidden_from_new_members_starts_at_their_join,
    a_new_members_unread_count_starts_at_their_join_when_history_is_hidden,
    the_log_keeps_hidden_history_in_place_without_its_content,
);

/// Waits until the log (read as the owner) holds, after `after`, a relayed change matching
/// `wanted`; returns its event_seq.
async fn wait_for_group_event(
    client: &mut Client,
    owner: i64,
    group_id: i64,
    after: i64,
    wanted: fn(&GroupChange) -> bool,
) -> i64 {
    let found =
        wait_for_update(client, owner, group_id, |update| update.event_seq > after && is_group_event(update, wanted));
    found.await.event_seq
}

async fn a_banned_member_is_refused_from_the_ban_on(storage: Storage) {
    let mut fixture = start(storage).await;
    let group_id = fixture.group(GroupKind::Community, 1, &[2, 3]).await;
    send_ok(&mut fixture.messages, 2, group_id, "k-1", "hi").await;

    let ban = groups_pb::BanMemberRequest { group_id, user_id: 2, ..Default::default() };
    fixture.groups.ban_member(as_user(1, ban)).await.expect("the owner bans");
    let client = &mut fixture.messages;
    wait_for_group_event(
        client,
        1,
        group_id,
        0,
        |change| matches!(change, GroupChange::MemberBanned(ban) if ban.user_id == 2),
    )
    .await;

    let refused = send(client, 2, group_id, "k-2", "still here?").await;
    let refused = expect_reason(refused, Code::PermissionDenied, ErrorReason::NotAMember);
    assert!(refused.message().contains("not a member"), "{}", refused.message());
    let list = pb::ListMessagesRequest { group_id, direction: pb::Direction::Forward as i32, ..Default::default() };
    expect_code(client.list_messages(as_user(2, list)).await, Code::PermissionDenied);
    send_ok(client, 3, group_id, "k-3", "others still post").await;
    assert_eq!(history(client, 1, group_id).await.len(), 2, "the refused send wrote nothing");
}

async fn a_removed_member_is_refused_until_added_again(storage: Storage) {
    let mut fixture = start(storage).await;
    let group_id = fixture.group(GroupKind::Community, 1, &[2]).await;
    send_ok(&mut fixture.messages, 2, group_id, "k-1", "hi").await;

    let remove = groups_pb::RemoveMemberRequest { group_id, user_id: 2 };
    fixture.groups.remove_member(as_user(1, remove)).await.expect("the owner removes");
    let client = &mut fixture.messages;
    let removed_at = wait_for_group_event(
        client,
        1,
        group_id,
        0,
        |change| matches!(change, GroupChange::MemberRemoved(removed) if removed.user_id == 2),
    )
    .await;
    expect_code(send(client, 2, group_id, "k-2", "hello?").await, Code::PermissionDenied);

    add(&mut fixture.groups, 1, group_id, &[2]).await;
    let client = &mut fixture.messages;
    wait_for_group_event(
        client,
        1,
        group_id,
        removed_at,
        |change| matches!(change, GroupChange::MemberJoined(joined) if joined.user_id == 2),
    )
    .await;
    send_ok(client, 2, group_id, "k-2", "back again").await;
}

async fn a_muted_member_is_refused_until_unmuted(storage: Storage) {
    let mut fixture = start(storage).await;
    let group_id = fixture.group(GroupKind::Community, 1, &[2]).await;
    send_ok(&mut fixture.messages, 2, group_id, "k-1", "hi").await;

    let mute = groups_pb::MuteMemberRequest { group_id, user_id: 2, until: Some(seconds_from_now(600)) };
    fixture.groups.mute_member(as_user(1, mute)).await.expect("the owner mutes");
    let client = &mut fixture.messages;
    wait_for_group_event(
        client,
        1,
        group_id,
        0,
        |change| matches!(change, GroupChange::MemberMuted(muted) if muted.user_id == 2),
    )
    .await;
    let refused = send(client, 2, group_id, "k-2", "can you hear me").await;
    let refused = expect_reason(refused, Code::PermissionDenied, ErrorReason::Muted);
    assert!(refused.message().contains("muted"), "{}", refused.message());
    assert!(!error_metadata(&refused, "muted_until").is_empty());
    // Nor may they edit or react: each would reach every member's screen.
    let seq = history(client, 2, group_id).await[0].message_seq;
    let edit = pb::EditMessageRequest { group_id, message_seq: seq, text: "edited while muted".into() };
    let refused =
        expect_reason(client.edit_message(as_user(2, edit)).await, Code::PermissionDenied, ErrorReason::Muted);
    assert!(refused.message().contains("muted"), "{}", refused.message());
    let react = pb::AddReactionRequest { group_id, message_seq: seq, emoji: "🔥".into() };
    expect_code(client.add_reaction(as_user(2, react)).await, Code::PermissionDenied);
    // A muted member still reads.
    assert_eq!(history(client, 2, group_id).await.len(), 1);

    let unmute = groups_pb::UnmuteMemberRequest { group_id, user_id: 2 };
    fixture.groups.unmute_member(as_user(1, unmute)).await.expect("the owner unmutes");
    let client = &mut fixture.messages;
    wait_for_group_event(
        client,
        1,
        group_id,
        0,
        |change| matches!(change, GroupChange::MemberUnmuted(unmuted) if unmuted.user_id == 2),
    )
    .await;
    send_ok(client, 2, group_id, "k-2", "can you hear me").await;
}

async fn a_promotion_grants_moderation_at_once(storage: Storage) {
    let mut fixture = start(storage).await;
    let group_id = fixture.group(GroupKind::Community, 1, &[2]).await;
    let message = send_ok(&mut fixture.messages, 1, group_id, "k", "pin me").await;
    let pin = pb::PinMessageRequest { group_id, message_seq: message.message_seq };
    expect_code(fixture.messages.pin_message(as_user(2, pin)).await, Code::PermissionDenied);

    set_role(&mut fixture.groups, 1, group_id, 2, Role::Admin).await;
    let client = &mut fixture.messages;
    wait_for_group_event(
        client,
        1,
        group_id,
        0,
        |change| matches!(change, GroupChange::MemberRoleChanged(changed) if changed.user_id == 2),
    )
    .await;
    client.pin_message(as_user(2, pin)).await.expect("an admin pins");
}

/// An admin moderates plain members but not the owner nor another admin; the owner
/// moderates everyone; anyone deletes their own.
async fn moderators_act_only_on_the_messages_of_those_they_outrank(storage: Storage) {
    let mut fixture = start(storage).await;
    let group_id = fixture.group(GroupKind::Community, 1, &[2, 3, 4]).await;
    set_role(&mut fixture.groups, 1, group_id, 2, Role::Admin).await;
    set_role(&mut fixture.groups, 1, group_id, 3, Role::Admin).await;
    let client = &mut fixture.messages;
    wait_for_group_event(
        client,
        1,
        group_id,
        0,
        |change| matches!(change, GroupChange::MemberRoleChanged(changed) if changed.user_id == 3),
    )
    .await;
    let owners = send_ok(client, 1, group_id, "o", "the owner's").await.message_seq;
    let other_admins = send_ok(client, 3, group_id, "a", "another admin's").await.message_seq;
    let members = send_ok(client, 4, group_id, "m", "a member's").await.message_seq;
    let own = send_ok(client, 2, group_id, "s", "the admin's own").await.message_seq;
    let delete = |message_seq| pb::DeleteMessageRequest { group_id, message_seq };

    let refused = client.delete_message(as_user(2, delete(owners))).await;
    let refused = expect_reason(refused, Code::PermissionDenied, ErrorReason::PermissionDenied);
    assert!(refused.message().contains("outrank"), "{}", refused.message());
    expect_code(client.delete_message(as_user(2, delete(other_admins))).await, Code::PermissionDenied);
    client.delete_message(as_user(2, delete(members))).await.expect("an admin deletes a member's message");
    client.delete_message(as_user(2, delete(own))).await.expect("an admin deletes their own");
    client.delete_message(as_user(1, delete(other_admins))).await.expect("the owner deletes an admin's message");

    let purge = |user_id| pb::PurgeUserMessagesRequest { group_id, user_id, since: None };
    expect_code(client.purge_user_messages(as_user(2, purge(1))).await, Code::PermissionDenied);
    expect_code(client.purge_user_messages(as_user(2, purge(3))).await, Code::PermissionDenied);
    send_ok(client, 3, group_id, "a-2", "another admin's, again").await;
    client.purge_user_messages(as_user(1, purge(3))).await.expect("the owner purges an admin");
    client.purge_user_messages(as_user(2, purge(4))).await.expect("an admin purges a member");

    let kept: Vec<i64> = history(client, 1, group_id)
        .await
        .iter()
        .filter(|message| !message.text.is_empty())
        .map(|message| message.message_seq)
        .collect();
    assert_eq!(kept, [owners], "only the owner's message was out of every admin's reach");
}

async fn strangers_are_refused_and_private_chats_stay_hidden(storage: Storage) {
    let mut fixture = start(storage).await;
    let community = fixture.group(GroupKind::Community, 1, &[]).await;
    let chat = fixture.group(GroupKind::Chat, 1, &[2]).await;
    let client = &mut fixture.messages;
    // Members use both groups first, so whatever the service caches about them is warm.
    send_ok(client, 1, community, "k", "public").await;
    send_ok(client, 2, chat, "k", "private").await;

    // The same two codes as for groups, told apart by their reasons.
    expect_reason(send(client, 9, community, "k", "let me in").await, Code::PermissionDenied, ErrorReason::NotAMember);
    let list = |group_id| pb::ListMessagesRequest {
        group_id,
        direction: pb::Direction::Backward as i32,
        ..Default::default()
    };
    let listed = client.list_messages(as_user(9, list(community))).await;
    expect_reason(listed, Code::PermissionDenied, ErrorReason::NotAMember);
    let updates = pb::GetUpdatesRequest { group_id: community, ..Default::default() };
    expect_code(client.get_updates(as_user(9, updates)).await, Code::PermissionDenied);
    let mark = pb::MarkReadRequest { group_id: community, message_seq: 1 };
    expect_code(client.mark_read(as_user(9, mark)).await, Code::PermissionDenied);
    let counts = pb::GetUnreadCountsRequest { group_ids: vec![community] };
    expect_code(client.get_unread_counts(as_user(9, counts)).await, Code::PermissionDenied);
    let react = pb::AddReactionRequest { group_id: community, message_seq: 1, emoji: "👀".into() };
    expect_code(client.add_reaction(as_user(9, react)).await, Code::PermissionDenied);
    let get = pb::GetMessagesRequest { group_id: community, message_seqs: vec![1], ..Default::default() };
    expect_code(client.get_messages(as_user(9, get)).await, Code::PermissionDenied);

    // A private chat answers a stranger as if it did not exist, like an unknown id.
    for group_id in [chat, 999_999] {
        let probe =
            expect_reason(send(client, 9, group_id, "k", "probe").await, Code::NotFound, ErrorReason::GroupNotFound);
        assert_eq!(error_metadata(&probe, "group_id"), group_id.to_string());
        let listed = client.list_messages(as_user(9, list(group_id))).await;
        expect_reason(listed, Code::NotFound, ErrorReason::GroupNotFound);
        let updates = pb::GetUpdatesRequest { group_id, ..Default::default() };
        expect_code(client.get_updates(as_user(9, updates)).await, Code::NotFound);
        let get = pb::GetMessagesRequest { group_id, message_seqs: vec![1], ..Default::default() };
        expect_code(client.get_messages(as_user(9, get)).await, Code::NotFound);
    }
    assert_eq!(history(client, 2, chat).await.len(), 1, "nothing was posted by the probes");
}

async fn history_hidden_from_new_members_starts_at_their_join(storage: Storage) {
    let mut fixture = start(storage).await;
    let group_id = fixture.group(GroupKind::Community, 1, &[2]).await;
    let hide = groups_pb::UpdateGroupSettingsRequest {
        group_id,
        history_visible_to_new_members: Some(false),
        ..Default::default()
    };
    fixture.update_settings(1, hide).await;
    let before_1 = send_ok(&mut fixture.messages, 1, group_id, "b1", "before you came").await;
    let before_2 = send_ok(&mut fixture.messages, 2, group_id, "b2", "still before").await;
    add(&mut fixture.groups, 1, group_id, &[7]).await;
    fixture.settle().await;
    let client = &mut fixture.messages;
    let after = send_ok(client, 1, group_id, "a1", "welcome").await;

    assert_eq!(history(client, 7, group_id).await, vec![after.clone()], "forward: only from the join on");
    let backward =
        pb::ListMessagesRequest { group_id, direction: pb::Direction::Backward as i32, ..Default::default() };
    let listed = client.list_messages(as_user(7, backward.clone())).await.expect("listed").into_inner();
    assert_eq!(listed.messages, vec![after.clone()], "backward too");
    assert!(listed.next_page_token.is_empty());

    let by_seq = get_by_seq(client, 7, group_id, &[1, 2, 3]).await;
    assert_eq!(by_seq.messages, vec![after.clone()]);
    assert_eq!(by_seq.missing_message_seqs, vec![1, 2], "earlier messages are reported missing");
    let by_id = pb::GetMessagesRequest {
        group_id,
        message_ids: vec![before_1.message_id.clone(), after.message_id.clone()],
        message_seqs: Vec::new(),
    };
    let by_id = client.get_messages(as_user(7, by_id)).await.expect("read by id").into_inner();
    assert_eq!(by_id.messages, vec![after.clone()]);
    assert_eq!(by_id.missing_message_ids, vec![before_1.message_id.clone()]);

    // Members who were there, and moderators, see everything.
    assert_eq!(history(client, 2, group_id).await, vec![before_1.clone(), before_2.clone(), after.clone()]);
    let everything = client.list_messages(as_user(1, backward)).await.expect("listed").into_inner().messages;
    assert_eq!(everything, vec![after, before_2, before_1]);
    assert_eq!(unread(client, 7, group_id).await.last_message_seq, 3);
}

async fn a_new_members_unread_count_starts_at_their_join_when_history_is_hidden(storage: Storage) {
    let mut fixture = start(storage).await;
    let group_id = fixture.group(GroupKind::Community, 1, &[]).await;
    let hide = groups_pb::UpdateGroupSettingsRequest {
        group_id,
        history_visible_to_new_members: Some(false),
        ..Default::default()
    };
    fixture.update_settings(1, hide).await;
    send_ok(&mut fixture.messages, 1, group_id, "b1", "before you came").await;
    send_ok(&mut fixture.messages, 1, group_id, "b2", "still before").await;
    add(&mut fixture.groups, 1, group_id, &[7]).await;
    fixture.settle().await;
    send_ok(&mut fixture.messages, 1, group_id, "a1", "welcome").await;

    let counts = unread(&mut fixture.messages, 7, group_id).await;
    assert_eq!(counts.unread_messages, 1, "only the message the new member can see is unread: {counts:?}");
}

async fn the_log_keeps_hidden_history_in_place_without_its_content(storage: Storage) {
    let mut fixture = start(storage).await;
    let group_id = fixture.group(GroupKind::Community, 1, &[]).await;
    let hide = groups_pb::UpdateGroupSettingsRequest {
        group_id,
        history_visible_to_new_members: Some(false),
        ..Default::default()
    };
    fixture.update_settings(1, hide).await;
    send_ok(&mut fixture.messages, 1, group_id, "b1", "before you came").await;
    add(&mut fixture.groups, 1, group_id, &[7]).await;
    fixture.settle().await;
    send_ok(&mut fixture.messages, 1, group_id, "a1", "welcome").await;

    let seen_by_owner = fanfare_tests::messages::all_updates(&mut fixture.messages, 1, group_id).await;
    let seen_by_newcomer = fanfare_tests::messages::all_updates(&mut fixture.messages, 7, group_id).await;
    let positions = |updates: &[fanfare_proto::common::v1::Update]| -> Vec<i64> {
        updates.iter().map(|update| update.event_seq).collect()
    };
    assert_eq!(positions(&seen_by_newcomer), positions(&seen_by_owner), "the same entries, no hole");
    let texts = |updates: &[fanfare_proto::common::v1::Update]| -> Vec<String> {
        updates
            .iter()
            .filter_map(|update| match &update.change {
                Some(fanfare_proto::common::v1::update::Change::MessagePosted(posted)) => {
                    posted.message.as_ref().map(|message| message.text.clone())
                }
                _ => None,
            })
            .collect()
    };
    assert_eq!(texts(&seen_by_owner), ["before you came", "welcome"]);
    assert_eq!(texts(&seen_by_newcomer), ["", "welcome"], "older messages keep their place, not their content");
}
