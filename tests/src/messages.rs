//! Helpers for the messages service tests: a stack of groups and messages with clients,
//! groups set up and settled, common calls, and reading the update log.

use std::future::Future;
use std::time::Duration;

use fanfare_core::status::{ErrorReason, RETRY_AFTER_MS_KEY};
use fanfare_groups::store::GroupStore;
use fanfare_messages::MessagesConfig;
use fanfare_proto::common::v1 as common;
use fanfare_proto::common::v1::update::Change;
use fanfare_proto::groups::v1 as groups_pb;
use fanfare_proto::groups::v1::group_service_client::GroupServiceClient;
use fanfare_proto::messages::v1 as pb;
use fanfare_proto::messages::v1::message_service_client::MessageServiceClient;
use fanfare_testkit::{Storage, TestStack, as_user};
use tonic::transport::Channel;
use tonic::{Code, Status};
use tonic_types::StatusExt;

use crate::expect_code;

/// A connected messages client.
pub type Client = MessageServiceClient<Channel>;
/// A connected groups client.
pub type Groups = GroupServiceClient<Channel>;

/// How long an asynchronous effect (a relayed membership change, a publish) may take.
pub const EVENTUALLY: Duration = Duration::from_secs(10);
/// How often a wait looks again.
const POLL: Duration = Duration::from_millis(20);

/// Both services running, with one client of each.
pub struct Fixture {
    /// The running services and their stores.
    pub stack: TestStack,
    /// A groups client.
    pub groups: Groups,
    /// A messages client.
    pub messages: Client,
}

/// Starts groups and messages with their dev configuration on `storage`.
pub async fn start(storage: Storage) -> Fixture {
    start_with(storage, |_| {}).await
}

/// Starts groups and messages after `adjust` changed the messages configuration.
pub async fn start_with(storage: Storage, adjust: impl FnOnce(&mut MessagesConfig)) -> Fixture {
    let stack = TestStack::spawn_with(storage, |_| {}, adjust).await.expect("the stack starts");
    let groups = stack.groups().await.expect("a groups client connects");
    let messages = stack.messages().await.expect("a messages client connects");
    Fixture { stack, groups, messages }
}

impl Fixture {
    /// Creates a group of `kind` owned by `owner` with `members` added, and waits until
    /// every resulting membership change is in the messages log.
    pub async fn group(&mut self, kind: common::GroupKind, owner: i64, members: &[i64]) -> i64 {
        let group_id = crate::groups::create(&mut self.groups, owner, kind).await.group_id;
        for chunk in members.chunks(100) {
            crate::groups::add(&mut self.groups, owner, group_id, chunk).await;
        }
        self.settle().await;
        group_id
    }

    /// Waits until the groups outbox is fully relayed into the messages log.
    pub async fn settle(&self) {
        settle(self.stack.groups_store.as_ref()).await;
    }

    /// Changes a group's settings as `actor` and waits until the change is in the log.
    pub async fn update_settings(&mut self, actor: i64, request: groups_pb::UpdateGroupSettingsRequest) {
        self.groups.update_group_settings(as_user(actor, request)).await.expect("UpdateGroupSettings succeeds");
        self.settle().await;
    }
}

/// Waits until every groups outbox row has been relayed (and so appended to the messages
/// log, with the membership cache invalidated, before the relay marked it published).
pub async fn settle(groups_store: &dyn GroupStore) {
    eventually("the groups outbox is relayed", || async {
        groups_store.oldest_unpublished().await.expect("the groups outbox reads").is_none()
    })
    .await;
}

/// Polls `check` every 20 ms until it holds, failing after [`EVENTUALLY`].
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + EVENTUALLY;
    loop {
        if check().await {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(POLL).await;
    }
}

/// A text message request.
pub fn text(group_id: i64, key: &str, body: &str) -> pb::SendMessageRequest {
    pb::SendMessageRequest { group_id, client_message_id: key.to_owned(), text: body.to_owned(), ..Default::default() }
}

/// Sends a text message as `user`.
pub async fn send(
    client: &mut Client,
    user: i64,
    group_id: i64,
    key: &str,
    body: &str,
) -> Result<pb::SendMessageResponse, Status> {
    client.send_message(as_user(user, text(group_id, key, body))).await.map(tonic::Response::into_inner)
}

/// Sends a text message as `user`, expecting a new message.
#[track_caller]
pub fn posted(result: Result<pb::SendMessageResponse, Status>) -> common::Message {
    let response = result.expect("SendMessage succeeds");
    assert!(!response.duplicate, "a new message, not a retry");
    response.message.expect("the message is returned")
}

/// Sends a text message as `user`, expecting success; returns the message.
pub async fn send_ok(client: &mut Client, user: i64, group_id: i64, key: &str, body: &str) -> common::Message {
    posted(send(client, user, group_id, key, body).await)
}

/// One page of the log as `user`.
pub async fn updates_page(
    client: &mut Client,
    user: i64,
    group_id: i64,
    after_event_seq: i64,
    page_size: i32,
) -> Result<pb::get_updates_response::Result, Status> {
    let request = pb::GetUpdatesRequest { group_id, after_event_seq, page_size, ..Default::default() };
    let response = client.get_updates(as_user(user, request)).await?.into_inner();
    Ok(response.result.expect("GetUpdates answers a page or a resync"))
}

/// One page of the log as `user` after `after_event_seq`, naming the entry token held there.
pub async fn updates_page_after(
    client: &mut Client,
    user: i64,
    group_id: i64,
    (after_event_seq, after_entry_token): (i64, u64),
) -> pb::get_updates_response::Result {
    let request = pb::GetUpdatesRequest { group_id, after_event_seq, page_size: 1_000, after_entry_token };
    let response = client.get_updates(as_user(user, request)).await.expect("GetUpdates answers").into_inner();
    response.result.expect("GetUpdates answers a page or a resync")
}

/// A resync answer, which must not be a page.
#[track_caller]
pub fn resync(result: pb::get_updates_response::Result) -> pb::ResyncRequired {
    match result {
        pb::get_updates_response::Result::ResyncRequired(resync) => resync,
        other => panic!("resync required, got {other:?}"),
    }
}

/// One group's update log as a point-in-time restore of the messages database brings it
/// back: what [`log_snapshot`] saw of its counters. Restoring it ([`restore_log`]) removes
/// whatever the group's log and messages gained since, as restoring a backup taken at the
/// snapshot would (the rest of the database is left as it is: the tests look at one group).
#[derive(Debug, Clone, Copy)]
pub struct LogSnapshot {
    group_id: i64,
    last_event_seq: i64,
    last_message_seq: i64,
    last_entry_token: i64,
}

/// Takes `group_id`'s log counters from the messages database at `database_url`.
pub async fn log_snapshot(database_url: &str, group_id: i64) -> LogSnapshot {
    let mut connection = <sqlx::PgConnection as sqlx::Connection>::connect(database_url).await.expect("connect");
    let (last_event_seq, last_message_seq, last_entry_token): (i64, i64, i64) = sqlx::query_as(
        "SELECT last_event_seq, last_message_seq, last_entry_token FROM messages.group_logs WHERE group_id = $1",
    )
    .bind(group_id)
    .fetch_one(&mut connection)
    .await
    .expect("the group has a log");
    LogSnapshot { group_id, last_event_seq, last_message_seq, last_entry_token }
}

/// Puts `snapshot`'s group back as it stood (see [`LogSnapshot`]), in one transaction.
pub async fn restore_log(database_url: &str, snapshot: &LogSnapshot) {
    let mut connection = <sqlx::PgConnection as sqlx::Connection>::connect(database_url).await.expect("connect");
    let mut tx = sqlx::Connection::begin(&mut connection).await.expect("begin");
    let (group, events, messages) = (snapshot.group_id, snapshot.last_event_seq, snapshot.last_message_seq);
    for (table, seq, bound) in [
        ("messages.updates", "event_seq", events),
        ("messages.outbox", "event_seq", events),
        ("messages.system_events", "event_seq", events),
        ("messages.messages", "message_seq", messages),
        ("messages.message_mentions", "message_seq", messages),
        ("messages.reactions", "message_seq", messages),
        ("messages.reaction_counts", "message_seq", messages),
    ] {
        // Table and column names from the list above, never input.
        sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM {table} WHERE group_id = $1 AND {seq} > $2")))
            .bind(group)
            .bind(bound)
            .execute(&mut *tx)
            .await
            .unwrap_or_else(|error| panic!("rewinding {table}: {error}"));
    }
    sqlx::query(
        "UPDATE messages.group_logs SET last_event_seq = $2, last_message_seq = $3, last_entry_token = $4 \
         WHERE group_id = $1",
    )
    .bind(group)
    .bind(events)
    .bind(messages)
    .bind(snapshot.last_entry_token)
    .execute(&mut *tx)
    .await
    .expect("rewinding the counters");
    tx.commit().await.expect("commit the restore");
}

/// A page of the log, which must not be a resync.
#[track_caller]
pub fn page(result: pb::get_updates_response::Result) -> pb::UpdatesPage {
    match result {
        pb::get_updates_response::Result::Page(page) => page,
        pb::get_updates_response::Result::ResyncRequired(resync) => panic!("unexpected resync: {resync:?}"),
    }
}

/// The whole log of a group as `user`, paging `page_size` at a time.
pub async fn all_updates_paged(client: &mut Client, user: i64, group_id: i64, page_size: i32) -> Vec<common::Update> {
    let mut updates: Vec<common::Update> = Vec::new();
    loop {
        let after = updates.last().map_or(0, |update| update.event_seq);
        let read = page(updates_page(client, user, group_id, after, page_size).await.expect("GetUpdates succeeds"));
        if let Some(first) = read.updates.first() {
            assert_eq!(first.event_seq, after + 1, "a page starts right after the position asked");
        }
        let has_more = read.has_more;
        let empty = read.updates.is_empty();
        updates.extend(read.updates);
        if !has_more {
            return updates;
        }
        assert!(!empty, "a page that has more is not empty");
    }
}

/// The whole log of a group as `user`.
pub async fn all_updates(client: &mut Client, user: i64, group_id: i64) -> Vec<common::Update> {
    all_updates_paged(client, user, group_id, 1_000).await
}

/// The latest event_seq of a group, as `user` reads it.
pub async fn latest_event_seq(client: &mut Client, user: i64, group_id: i64) -> i64 {
    match updates_page(client, user, group_id, 0, 1).await.expect("GetUpdates succeeds") {
        pb::get_updates_response::Result::Page(page) => page.latest_event_seq,
        pb::get_updates_response::Result::ResyncRequired(resync) => resync.latest_event_seq,
    }
}

/// Waits until the log holds an update matching `wanted`, and returns it.
pub async fn wait_for_update(
    client: &mut Client,
    user: i64,
    group_id: i64,
    wanted: impl Fn(&common::Update) -> bool,
) -> common::Update {
    let deadline = tokio::time::Instant::now() + EVENTUALLY;
    loop {
        let updates = all_updates(client, user, group_id).await;
        if let Some(found) = updates.into_iter().find(|update| wanted(update)) {
            return found;
        }
        assert!(tokio::time::Instant::now() < deadline, "no such update in group {group_id}'s log");
        tokio::time::sleep(POLL).await;
    }
}

/// Whether an update is a relayed membership or settings change matching `wanted`.
pub fn is_group_event(update: &common::Update, wanted: impl Fn(&common::group_event::Change) -> bool) -> bool {
    match &update.change {
        Some(Change::GroupEvent(event)) => event.change.as_ref().is_some_and(wanted),
        _ => false,
    }
}

/// A short name for an update's change.
pub fn kind(update: &common::Update) -> &'static str {
    match update.change.as_ref().expect("every update carries a change") {
        Change::MessagePosted(_) => "posted",
        Change::MessageEdited(_) => "edited",
        Change::MessageDeleted(_) => "deleted",
        Change::MessagesPurged(_) => "purged",
        Change::ReactionsChanged(_) => "reactions",
        Change::MessagePinned(_) => "pinned",
        Change::MessageUnpinned(_) => "unpinned",
        Change::GroupEvent(_) => "group_event",
    }
}

/// The updates of the log that are timeline changes (not relayed group events).
pub fn timeline(updates: &[common::Update]) -> Vec<&common::Update> {
    updates.iter().filter(|update| kind(update) != "group_event").collect()
}

/// The whole history of a group as `user`, oldest first, `page_size` at a time.
pub async fn history_paged(client: &mut Client, user: i64, group_id: i64, page_size: i32) -> Vec<common::Message> {
    let mut messages = Vec::new();
    let mut page_token = String::new();
    loop {
        let request = pb::ListMessagesRequest {
            group_id,
            direction: pb::Direction::Forward as i32,
            anchor_message_seq: 0,
            page_size,
            page_token,
        };
        let page = client.list_messages(as_user(user, request)).await.expect("ListMessages succeeds").into_inner();
        messages.extend(page.messages);
        if page.next_page_token.is_empty() {
            return messages;
        }
        page_token = page.next_page_token;
    }
}

/// The whole history of a group as `user`, oldest first.
pub async fn history(client: &mut Client, user: i64, group_id: i64) -> Vec<common::Message> {
    history_paged(client, user, group_id, 100).await
}

/// Reads messages by seq as `user`.
pub async fn get_by_seq(client: &mut Client, user: i64, group_id: i64, seqs: &[i64]) -> pb::GetMessagesResponse {
    let request = pb::GetMessagesRequest { group_id, message_ids: Vec::new(), message_seqs: seqs.to_vec() };
    client.get_messages(as_user(user, request)).await.expect("GetMessages succeeds").into_inner()
}

/// Reads one message by seq as `user`, expecting it.
pub async fn get_one(client: &mut Client, user: i64, group_id: i64, seq: i64) -> common::Message {
    let mut found = get_by_seq(client, user, group_id, &[seq]).await;
    assert_eq!(found.messages.len(), 1, "message {seq} is found: {found:?}");
    found.messages.remove(0)
}

/// The unread state of `user` in one group.
pub async fn unread(client: &mut Client, user: i64, group_id: i64) -> pb::UnreadCount {
    let request = pb::GetUnreadCountsRequest { group_ids: vec![group_id] };
    let mut counts = client.get_unread_counts(as_user(user, request)).await.expect("GetUnreadCounts succeeds");
    let counts = std::mem::take(&mut counts.get_mut().counts);
    assert_eq!(counts.len(), 1, "one entry per group asked: {counts:?}");
    counts.into_iter().next().expect("one entry")
}

/// Reaction totals as `(emoji, count)` pairs, sorted by emoji.
pub fn totals(reactions: &[common::ReactionCount]) -> Vec<(String, i64)> {
    let mut pairs: Vec<(String, i64)> =
        reactions.iter().map(|reaction| (reaction.emoji.clone(), reaction.count)).collect();
    pairs.sort();
    pairs
}

/// Asserts `RESOURCE_EXHAUSTED` with a positive retry delay, returning the delay.
#[track_caller]
pub fn expect_retry_after<T: std::fmt::Debug>(result: Result<T, Status>) -> Duration {
    let status = expect_code(result, Code::ResourceExhausted);
    crate::expect_some_reason(&status);
    let details = status.get_error_details();
    let retry = details.retry_info().unwrap_or_else(|| panic!("a RetryInfo detail: {status:?}"));
    let delay = retry.retry_delay.unwrap_or_else(|| panic!("a retry delay: {status:?}"));
    assert!(delay > Duration::ZERO, "a positive delay: {status:?}");
    delay
}

/// Asserts `RESOURCE_EXHAUSTED` for `reason` with a positive retry delay, which the
/// `ErrorInfo` metadata repeats as `retry_after_ms`; returns the delay.
#[track_caller]
pub fn expect_retry_reason<T: std::fmt::Debug>(result: Result<T, Status>, reason: ErrorReason) -> Duration {
    let status = crate::expect_reason(result, Code::ResourceExhausted, reason);
    let delay = expect_retry_after::<()>(Err(status.clone()));
    assert_eq!(crate::error_metadata(&status, RETRY_AFTER_MS_KEY), delay.as_millis().to_string());
    delay
}

/// A group's log position and history, to show that a refused call changed nothing.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// The log's latest event_seq.
    pub latest_event_seq: i64,
    /// Every message, oldest first.
    pub messages: Vec<common::Message>,
}

/// Takes a [`Snapshot`] of a group as `user`.
pub async fn snapshot(client: &mut Client, user: i64, group_id: i64) -> Snapshot {
    Snapshot {
        latest_event_seq: latest_event_seq(client, user, group_id).await,
        messages: history(client, user, group_id).await,
    }
}
