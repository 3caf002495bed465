//! The group committer and several pods (docs/messages.md "Group commit", "No hole, ever",
//! "Who may do what"): a full commit queue answers RESOURCE_EXHAUSTED with a delay, a batch
//! whose transaction fails answers UNAVAILABLE and leaves no hole, and a membership change
//! appended by one pod is honoured by every other, as are slow mode and per-user rate limits.

use std::sync::Arc;
use std::time::Duration;

use fanfare_bus::UpdateBus;
use fanfare_core::status::ErrorReason;
use fanfare_groups::store::{GroupStore, MemoryGroupStore};
use fanfare_messages::MessagesConfig;
use fanfare_messages::store::{MemoryMessageStore, MessageStore};
use fanfare_proto::common::v1 as common;
use fanfare_proto::common::v1::group_event::Change as GroupChange;
use fanfare_proto::groups::v1 as groups_pb;
use fanfare_proto::messages::v1 as pb;
use fanfare_testkit::{Storage, TestDatabase, as_user};
use fanfare_tests::messages::{
    Client, all_updates, eventually, expect_retry_after, expect_retry_reason, history, is_group_event, send, settle,
    wait_for_update,
};
use fanfare_tests::outage::{CommitGate, GatedStore, Services, postgres_stores};
use fanfare_tests::{expect_code, on_every_storage};
use tokio::task::JoinSet;
use tonic::{Code, Status};

on_every_storage!(
    a_full_commit_queue_answers_resource_exhausted_with_a_delay,
    a_failed_commit_answers_unavailable_and_leaves_no_hole,
    every_pod_refuses_a_banned_member,
    slow_mode_holds_across_pods,
    per_user_limits_on_every_action_hold_across_pods,
);

/// Stores for `storage`, and the database they live in.
async fn stores(storage: Storage) -> (Option<TestDatabase>, Arc<dyn GroupStore>, Arc<dyn MessageStore>) {
    match storage {
        Storage::Memory => (None, Arc::new(MemoryGroupStore::new()), Arc::new(MemoryMessageStore::new())),
        Storage::Postgres => {
            let (database, groups_store, messages_store) = postgres_stores().await;
            (Some(database), groups_store, messages_store)
        }
    }
}

/// Services over a gated messages store, with `adjust`ed messages configuration and a group
/// of owner 1 and members 2 to 5. Members are added one at a time, so that each relayed
/// batch of membership changes fits a commit queue as short as 2.
async fn gated(
    storage: Storage,
    adjust: impl FnOnce(&mut MessagesConfig),
) -> (Option<TestDatabase>, Services, Arc<GatedStore>, i64) {
    let (database, groups_store, messages_store) = stores(storage).await;
    let gate = CommitGate::around(messages_store);
    let store: Arc<dyn MessageStore> = gate.clone();
    let bus = fanfare_bus::open_bus(None, "").await.expect("a bus");
    let services = Services::start(groups_store, store, bus, adjust).await;
    let mut groups = services.groups().await;
    let group_id = fanfare_tests::groups::create(&mut groups, 1, common::GroupKind::Community).await.group_id;
    settle(services.groups_store.as_ref()).await;
    for member in 2..=5 {
        fanfare_tests::groups::add(&mut groups, 1, group_id, &[member]).await;
        settle(services.groups_store.as_ref()).await;
    }
    (database, services, gate, group_id)
}

/// Sends as `user` on its own task.
fn spawn_send(
    sends: &mut JoinSet<(i64, Result<pb::SendMessageResponse, Status>)>,
    client: &Client,
    user: i64,
    group_id: i64,
) {
    let mut client = client.clone();
    sends.spawn(async move { (user, send(&mut client, user, group_id, &format!("from-{user}"), "hi").await) });
}

async fn wait_for_applies(gate: &GatedStore, at_least: u64) {
    eventually("a batch write is under way", || async { gate.hook().applies_started() >= at_least }).await;
}

async fn a_full_commit_queue_answers_resource_exhausted_with_a_delay(storage: Storage) {
    let (_database, services, gate, group_id) = gated(storage, |config| {
        config.commit.commit_workers = 1;
        config.commit.commit_batch_max = 1;
        config.commit.commit_queue = 2;
    })
    .await;
    let client = services.messages().await;
    let mut sends = JoinSet::new();
    gate.hook().close();
    let started = gate.hook().applies_started();
    spawn_send(&mut sends, &client, 2, group_id);
    wait_for_applies(&gate, started + 1).await;

    // The only worker is stuck in a commit: two of these wait in the queue, the third finds
    // it full and is answered at once.
    for user in 3..=5 {
        spawn_send(&mut sends, &client, user, group_id);
    }
    let (_, first_answer) = sends.join_next().await.expect("a send task").expect("a send completes");
    let delay = expect_retry_reason(first_answer, ErrorReason::Overloaded);
    assert!(delay <= Duration::from_secs(1), "a short retry delay: {delay:?}");

    gate.hook().open();
    let mut accepted = Vec::new();
    while let Some(joined) = sends.join_next().await {
        let (user, answer) = joined.expect("a send completes");
        accepted.push((user, answer.expect("the waiting sends are committed").message.expect("a message")));
    }
    assert_eq!(accepted.len(), 3);
    let mut client = client;
    let seqs: Vec<i64> = history(&mut client, 1, group_id).await.iter().map(|message| message.message_seq).collect();
    assert_eq!(seqs, vec![1, 2, 3], "the refused send took no sequence number");
}

async fn a_failed_commit_answers_unavailable_and_leaves_no_hole(storage: Storage) {
    let (_database, services, gate, group_id) = gated(storage, |config| {
        config.limits.user_sends_per_second = 0;
        config.commit.commit_workers = 1;
    })
    .await;
    let mut client = services.messages().await;
    gate.hook().close();
    gate.hook().fail_next_batch();
    let started = gate.hook().applies_started();
    let mut sends = JoinSet::new();
    for user in 2..=5 {
        spawn_send(&mut sends, &client, user, group_id);
    }
    wait_for_applies(&gate, started + 1).await;
    gate.hook().open();

    let mut refused = Vec::new();
    let mut posted = Vec::new();
    while let Some(joined) = sends.join_next().await {
        match joined.expect("a send completes") {
            (_, Ok(response)) => posted.push(response.message.expect("a message").message_seq),
            (user, Err(status)) => {
                assert_eq!(status.code(), Code::Unavailable, "a failed batch answers UNAVAILABLE: {status:?}");
                refused.push(user);
            }
        }
    }
    assert!(!refused.is_empty(), "the first batch failed");
    posted.sort_unstable();
    assert_eq!(posted, (1..=posted.len() as i64).collect::<Vec<i64>>(), "the failed batch took no seq");

    for user in refused {
        let retried = send(&mut client, user, group_id, &format!("from-{user}"), "hi").await.expect("a retry");
        assert!(!retried.duplicate, "nothing of the failed batch was written");
    }
    assert_eq!(history(&mut client, 1, group_id).await.len(), 4);
    let event_seqs: Vec<i64> = all_updates(&mut client, 1, group_id).await.iter().map(|u| u.event_seq).collect();
    assert_eq!(event_seqs, (1..=event_seqs.len() as i64).collect::<Vec<i64>>(), "no hole in the log");
}

async fn every_pod_refuses_a_banned_member(storage: Storage) {
    let (_database, groups_store, messages_store) = stores(storage).await;
    let bus: Arc<dyn UpdateBus> = fanfare_bus::open_bus(None, "").await.expect("a bus");
    let mut services = Services::start(groups_store, Arc::clone(&messages_store), Arc::clone(&bus), |_| {}).await;
    let other_pod = services.start_another_messages_pod(messages_store, bus).await;
    let mut groups = services.groups().await;
    let group_id = fanfare_tests::groups::create(&mut groups, 1, common::GroupKind::Community).await.group_id;
    fanfare_tests::groups::add(&mut groups, 1, group_id, &[2]).await;
    settle(services.groups_store.as_ref()).await;
    let mut relayed_to = services.messages().await;
    let mut elsewhere = Client::connect(format!("http://{other_pod}")).await.expect("connect to the other pod");
    send(&mut elsewhere, 2, group_id, "k-1", "hello from the other pod").await.expect("sent");

    let ban = groups_pb::BanMemberRequest { group_id, user_id: 2, ..Default::default() };
    groups.ban_member(as_user(1, ban)).await.expect("banned");
    wait_for_update(&mut relayed_to, 1, group_id, |update| {
        is_group_event(update, |change| matches!(change, GroupChange::MemberBanned(banned) if banned.user_id == 2))
    })
    .await;
    // The pod the relay called invalidated before the entry was visible; the other learns
    // from its announcement on the bus, moments later.
    expect_code(send(&mut relayed_to, 2, group_id, "k-2", "here?").await, Code::PermissionDenied);
    let list = pb::ListMessagesRequest { group_id, direction: pb::Direction::Forward as i32, ..Default::default() };
    eventually("the other pod drops the banned member", || {
        let mut client = elsewhere.clone();
        let request = list.clone();
        async move {
            let answer = client.list_messages(as_user(2, request)).await;
            answer.is_err_and(|status| status.code() == Code::PermissionDenied)
        }
    })
    .await;
    expect_code(send(&mut elsewhere, 2, group_id, "k-3", "and here?").await, Code::PermissionDenied);
    assert_eq!(history(&mut relayed_to, 1, group_id).await.len(), 1);
}

async fn slow_mode_holds_across_pods(storage: Storage) {
    let (_database, groups_store, messages_store) = stores(storage).await;
    let bus: Arc<dyn UpdateBus> = fanfare_bus::open_bus(None, "").await.expect("a bus");
    let mut services = Services::start(groups_store, Arc::clone(&messages_store), Arc::clone(&bus), |_| {}).await;
    let other_pod = services.start_another_messages_pod(messages_store, bus).await;
    let mut groups = services.groups().await;
    let group_id = fanfare_tests::groups::create(&mut groups, 1, common::GroupKind::Community).await.group_id;
    fanfare_tests::groups::add(&mut groups, 1, group_id, &[2]).await;
    let slow = groups_pb::UpdateGroupSettingsRequest { group_id, slow_mode_seconds: Some(30), ..Default::default() };
    groups.update_group_settings(as_user(1, slow)).await.expect("slow mode on");
    settle(services.groups_store.as_ref()).await;

    let mut one_pod = services.messages().await;
    let mut another_pod = Client::connect(format!("http://{other_pod}")).await.expect("connect to the other pod");
    send(&mut one_pod, 2, group_id, "k-1", "first").await.expect("the first post");
    let delay = expect_retry_after(send(&mut another_pod, 2, group_id, "k-2", "second, elsewhere").await);
    assert!(delay > Duration::from_secs(20) && delay <= Duration::from_secs(30), "{delay:?}");
    assert_eq!(history(&mut another_pod, 2, group_id).await.len(), 1);
}

/// Reactions and changes are rate-limited per user like sends, and on Redis the quota is one
/// for all pods: a user alternating between two pods gets the burst once. (With the
/// in-process bus of `make run` there is no shared store, and each pod counts alone.)
async fn per_user_limits_on_every_action_hold_across_pods(storage: Storage) {
    let (_database, groups_store, messages_store) = stores(storage).await;
    let (bus, shared): (Arc<dyn UpdateBus>, bool) = match storage {
        Storage::Memory => (fanfare_bus::open_bus(None, "").await.expect("a bus"), false),
        Storage::Postgres => {
            let url =
                std::env::var("REDIS_URL").unwrap_or_else(|_| fanfare_testkit::stack::DEFAULT_REDIS_URL.to_owned());
            let namespace = format!("limits-{}", uuid::Uuid::new_v4().simple());
            (fanfare_bus::open_bus(Some(&url), &namespace).await.expect("a redis bus"), true)
        }
    };
    let mut services = Services::start(groups_store, Arc::clone(&messages_store), Arc::clone(&bus), |config| {
        // Slow refills, so that no unit comes back while the test runs.
        config.limits.user_reactions_per_second = 1;
        config.limits.user_reactions_burst = 3;
        config.limits.user_changes_per_second = 1;
        config.limits.user_changes_burst = 2;
    })
    .await;
    let other_pod = services.start_another_messages_pod(messages_store, bus).await;
    let mut groups = services.groups().await;
    let group_id = fanfare_tests::groups::create(&mut groups, 1, common::GroupKind::Community).await.group_id;
    fanfare_tests::groups::add(&mut groups, 1, group_id, &[2]).await;
    settle(services.groups_store.as_ref()).await;
    let mut pods = [
        services.messages().await,
        Client::connect(format!("http://{other_pod}")).await.expect("connect to the other pod"),
    ];
    send(&mut pods[0], 2, group_id, "k-1", "first").await.expect("the first post");

    // Six reaction toggles, alternating pods.
    let mut allowed = 0;
    let mut refused = Vec::new();
    for index in 0..6_usize {
        let pod = &mut pods[index % 2];
        let emoji = "👍".to_owned();
        let result = if index % 4 < 2 {
            pod.add_reaction(as_user(2, pb::AddReactionRequest { group_id, message_seq: 1, emoji })).await.map(|_| ())
        } else {
            pod.remove_reaction(as_user(2, pb::RemoveReactionRequest { group_id, message_seq: 1, emoji }))
                .await
                .map(|_| ())
        };
        match result {
            Ok(()) => allowed += 1,
            Err(status) => refused.push(status),
        }
    }
    assert_eq!(allowed, if shared { 3 } else { 6 }, "the burst of 3, once for both pods when shared: {refused:?}");
    for status in refused {
        assert!(status.message().contains("reactions"), "{status:?}");
        expect_retry_reason::<()>(Err(status), ErrorReason::RateLimited);
    }

    // Edits count as changes: a burst of 2 on one pod, then none left on the other (shared) or
    // on the same one (not shared).
    for index in 0..2 {
        let edit = pb::EditMessageRequest { group_id, message_seq: 1, text: format!("edit {index}") };
        pods[0].edit_message(as_user(2, edit)).await.expect("within the burst");
    }
    let edit = pb::EditMessageRequest { group_id, message_seq: 1, text: "one too many".to_owned() };
    let delay = expect_retry_after(pods[usize::from(shared)].edit_message(as_user(2, edit)).await);
    assert!(delay <= Duration::from_secs(1), "{delay:?}");
    if !shared {
        return;
    }
    let mut messages = history(&mut pods[1], 2, group_id).await;
    assert_eq!(
        messages.pop().map(|message| message.text),
        Some("edit 1".to_owned()),
        "the refused edit changed nothing"
    );
}
