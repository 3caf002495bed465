//! The in-memory [`MessageStore`], for `fanfare dev` and fast tests: plain maps behind one
//! mutex, with the same semantics as PostgreSQL, update log and outbox included.
//!
//! `apply` takes the lock once for the whole batch and applies the writes in order; each
//! write checks everything before changing anything, so a refused write changes nothing
//! and consumes no sequence number. The lock is never held across an await. Times are kept
//! at microsecond precision, as PostgreSQL keeps them, so both stores return equal values.
//!
//! The few pure rules both stores evaluate in Rust (slow mode, the edit window, leases)
//! live in [`crate::domain::rules`], shared with the PostgreSQL store.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use fanfare_core::ids::{EventSeq, GroupId, MessageSeq, UserId};
use fanfare_core::paging::PageSize;
use fanfare_proto::common::v1 as common;
use uuid::Uuid;

use super::{
    Applied, Committed, Direction, LogWrite, MessageStore, OutboxCursor, StoreError, StoreResult, UpdatesRead,
    WriteError, system_event_digest,
};
use crate::domain::rules::{edit_window_closed, joined_member, lease_end, slow_mode_wait, stored_time};
use crate::domain::updates::{EntryLink, TimelineChange};
use crate::domain::{
    ActorRole, ClientMessageId, Content, Emoji, LogPosition, MAX_PURGED_PER_UPDATE, Message, MessageText, NewMessage,
    PinChange, ReactionChange, ReactionCount, ReactionUpdate, StoredUpdate, Unread, outbox_lane,
};

/// A [`MessageStore`] in memory; clones share the same data.
#[derive(Debug, Clone, Default)]
pub struct MemoryMessageStore {
    state: Arc<Mutex<State>>,
}

impl MemoryMessageStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> StoreResult<MutexGuard<'_, State>> {
        // A panic while holding the lock may have left a batch half-applied.
        self.state
            .lock()
            .map_err(|_| StoreError::Internal(anyhow::Error::msg("a panic poisoned the lock").context("memory store")))
    }
}

#[derive(Debug, Default)]
struct State {
    logs: HashMap<GroupId, LogPosition>,
    messages: BTreeMap<(GroupId, MessageSeq), StoredMessage>,
    ids: HashMap<(GroupId, Uuid), MessageSeq>,
    idempotency_keys: HashMap<(GroupId, UserId, ClientMessageId), MessageSeq>,
    /// The log, with each entry's commit time (for pruning).
    updates: BTreeMap<(GroupId, EventSeq), (StoredUpdate, DateTime<Utc>)>,
    read_markers: HashMap<(GroupId, UserId), MessageSeq>,
    last_posted: HashMap<(GroupId, UserId), DateTime<Utc>>,
    /// Relayed events appended: (source, outbox id) → (event_seq, content digest).
    system_events: HashMap<(String, i64), (EventSeq, Vec<u8>)>,
    /// Unpublished updates by (lane, group, event_seq), as PostgreSQL keys them, with their
    /// commit time.
    outbox: BTreeMap<(i16, GroupId, EventSeq), DateTime<Utc>>,
    /// Recovery leases: lane → (owner, until).
    lane_leases: HashMap<i16, (Uuid, DateTime<Utc>)>,
    /// What the batch being applied appended, in order.
    appended: Vec<StoredUpdate>,
}

#[derive(Debug)]
struct StoredMessage {
    /// The message, with `reactions` left empty (they are counted from `reactions`).
    message: Message,
    /// The content as first posted, which an idempotent retry must repeat.
    original: Content,
    /// Who reacted with each emoji; no empty sets.
    reactions: BTreeMap<Emoji, BTreeSet<UserId>>,
}

impl StoredMessage {
    fn totals(&self) -> Vec<ReactionCount> {
        self.reactions
            .iter()
            .map(|(emoji, users)| ReactionCount { emoji: emoji.clone(), count: users.len() as i64 })
            .collect()
    }

    /// The message as callers see it.
    fn current(&self) -> Message {
        Message { reactions: self.totals(), ..self.message.clone() }
    }

    fn is_deleted(&self) -> bool {
        self.message.deleted_at.is_some()
    }

    /// Clears content, pin and reactions.
    fn make_tombstone(&mut self, now: DateTime<Utc>) {
        self.message.content = Content::default();
        self.message.deleted_at = Some(now);
        self.message.pinned = false;
        self.reactions.clear();
    }
}

/// A range of keys of a map keyed by (group, message_seq).
type MessageKeys = (Bound<(GroupId, MessageSeq)>, Bound<(GroupId, MessageSeq)>);

/// The highest seq a key can hold: the upper end of a group's keys.
fn highest_message_seq() -> MessageSeq {
    MessageSeq::from_trusted(i64::MAX)
}

/// The keys of every message of `group`.
fn messages_of(group: GroupId) -> MessageKeys {
    messages_after(group, None)
}

/// The keys of `group`'s messages after `after` (all of them when `None`).
fn messages_after(group: GroupId, after: Option<MessageSeq>) -> MessageKeys {
    let start = after.map_or(Bound::Included((group, MessageSeq::ZERO)), |after| Bound::Excluded((group, after)));
    (start, Bound::Included((group, highest_message_seq())))
}

/// The keys of `group`'s messages before `before` (all of them when `None`).
fn messages_before(group: GroupId, before: Option<MessageSeq>) -> MessageKeys {
    let end = before.map_or(Bound::Included((group, highest_message_seq())), |before| Bound::Excluded((group, before)));
    (Bound::Included((group, MessageSeq::ZERO)), end)
}

/// A range of keys of a map keyed by (group, event_seq).
type UpdateKeys = (Bound<(GroupId, EventSeq)>, Bound<(GroupId, EventSeq)>);

/// The keys of `group`'s log entries after `after`.
fn updates_after(group: GroupId, after: EventSeq) -> UpdateKeys {
    (Bound::Excluded((group, after)), Bound::Included((group, EventSeq::from_trusted(i64::MAX))))
}

impl State {
    fn position(&self, group: GroupId) -> LogPosition {
        self.logs.get(&group).copied().unwrap_or_else(|| LogPosition::empty(group))
    }

    /// Appends an update (built for the group's next event_seq) and its outbox row.
    fn append(&mut self, group: GroupId, change: &TimelineChange<'_>, now: DateTime<Utc>) -> EventSeq {
        let log = self.logs.entry(group).or_insert_with(|| LogPosition::empty(group));
        log.last_event_seq = log.last_event_seq.next();
        let event_seq = log.last_event_seq;
        let link = EntryLink::after(log.last_entry_token);
        log.last_entry_token = link.token;
        let update = change.to_stored(group, event_seq, now, link);
        self.appended.push(update.clone());
        self.updates.insert((group, event_seq), (update, now));
        self.outbox.insert((outbox_lane(group), group, event_seq), now);
        event_seq
    }

    fn stored(&self, group: GroupId, message_seq: MessageSeq) -> Result<&StoredMessage, WriteError> {
        self.messages.get(&(group, message_seq)).ok_or(WriteError::MessageNotFound { group, message_seq })
    }

    fn stored_mut(&mut self, group: GroupId, message_seq: MessageSeq) -> Result<&mut StoredMessage, WriteError> {
        self.messages.get_mut(&(group, message_seq)).ok_or(WriteError::MessageNotFound { group, message_seq })
    }

    /// A message that exists and is not a tombstone.
    fn live(&self, group: GroupId, message_seq: MessageSeq) -> Result<&StoredMessage, WriteError> {
        let stored = self.stored(group, message_seq)?;
        if stored.is_deleted() { Err(WriteError::Deleted(message_seq)) } else { Ok(stored) }
    }

    fn apply(&mut self, write: LogWrite, now: DateTime<Utc>) -> Result<Applied, WriteError> {
        match write {
            LogWrite::Post { message, slow_mode } => self.post(message, slow_mode, now),
            LogWrite::Edit { group, message_seq, editor, text, edit_window } => {
                self.edit(group, message_seq, editor, text, edit_window, now)
            }
            LogWrite::Delete { group, message_seq, actor, actor_role } => {
                self.delete(group, message_seq, actor, actor_role, now)
            }
            LogWrite::Purge { group, user, since, actor } => Ok(self.purge(group, user, since, actor, now)),
            LogWrite::React { group, message_seq, user, emoji, change, max_distinct_emojis, update } => {
                self.react(group, message_seq, user, emoji, change, max_distinct_emojis, update, now)
            }
            LogWrite::EmitReactionTotals { group, message_seq } => {
                let totals = self.stored(group, message_seq)?.totals();
                let change = TimelineChange::ReactionsChanged { message_seq, totals: &totals };
                Ok(Applied::ReactionTotalsEmitted { event_seq: self.append(group, &change, now) })
            }
            LogWrite::Pin { group, message_seq, actor, change, max_pins } => {
                self.pin(group, message_seq, actor, change, max_pins, now)
            }
            LogWrite::System { source, outbox_id, event } => self.system(source, outbox_id, event, now),
        }
    }

    fn post(
        &mut self,
        new: NewMessage,
        slow_mode: Option<Duration>,
        now: DateTime<Utc>,
    ) -> Result<Applied, WriteError> {
        let group = new.group_id;
        let key = (group, new.sender, new.client_message_id.clone());
        // A retry is answered before any other rule: slow mode must not refuse it.
        if let Some(&original_seq) = self.idempotency_keys.get(&key) {
            let original = self.stored(group, original_seq)?;
            if original.original != new.content {
                return Err(WriteError::IdempotencyConflict { key: key.2.as_str().to_owned(), original_seq });
            }
            return Ok(Applied::Posted { message: original.current(), duplicate: true });
        }
        let last_posted = self.last_posted.get(&(group, new.sender)).copied();
        if let Some(retry_after) = slow_mode_wait(last_posted, slow_mode, now) {
            return Err(WriteError::SlowMode { group, retry_after });
        }
        let position = self.position(group);
        if let Some(target) = new.content.reply_to_message_seq
            && !(MessageSeq::ZERO.next()..=position.last_message_seq).contains(&target)
        {
            return Err(WriteError::ReplyTargetNotFound(target));
        }

        let message = Message {
            id: Uuid::now_v7(),
            group_id: group,
            message_seq: position.last_message_seq.next(),
            event_seq: position.last_event_seq.next(),
            sender: new.sender,
            client_message_id: new.client_message_id,
            content: new.content.clone(),
            created_at: now,
            edited_at: None,
            version: 1,
            deleted_at: None,
            reactions: Vec::new(),
            pinned: false,
        };
        let event_seq = self.append(group, &TimelineChange::Posted(&message), now);
        debug_assert_eq!(event_seq, message.event_seq);
        let message_seq = message.message_seq;
        if let Some(log) = self.logs.get_mut(&group) {
            log.last_message_seq = message_seq;
        }
        self.idempotency_keys.insert(key, message_seq);
        self.ids.insert((group, message.id), message_seq);
        self.last_posted.insert((group, message.sender), now);
        let marker = self.read_markers.entry((group, message.sender)).or_default();
        *marker = (*marker).max(message_seq);
        let stored = StoredMessage { message: message.clone(), original: new.content, reactions: BTreeMap::new() };
        self.messages.insert((group, message_seq), stored);
        Ok(Applied::Posted { message, duplicate: false })
    }

    fn edit(
        &mut self,
        group: GroupId,
        message_seq: MessageSeq,
        editor: UserId,
        text: MessageText,
        edit_window: Duration,
        now: DateTime<Utc>,
    ) -> Result<Applied, WriteError> {
        let stored = self.stored(group, message_seq)?;
        if stored.message.sender != editor {
            return Err(WriteError::NotSender(message_seq));
        }
        if stored.is_deleted() {
            return Err(WriteError::Deleted(message_seq));
        }
        if edit_window_closed(stored.message.created_at, edit_window, now) {
            return Err(WriteError::EditWindowClosed { message_seq, window: edit_window });
        }
        let stored = self.stored_mut(group, message_seq)?;
        stored.message.content.text = text;
        stored.message.edited_at = Some(now);
        stored.message.version += 1;
        let edited = stored.current();
        self.append(group, &TimelineChange::Edited(&edited), now);
        Ok(Applied::Edited(edited))
    }

    fn delete(
        &mut self,
        group: GroupId,
        message_seq: MessageSeq,
        actor: UserId,
        actor_role: ActorRole,
        now: DateTime<Utc>,
    ) -> Result<Applied, WriteError> {
        let stored = self.stored(group, message_seq)?;
        if stored.message.sender != actor && actor_role == ActorRole::Member {
            return Err(WriteError::NotSender(message_seq));
        }
        if stored.is_deleted() {
            return Ok(Applied::Deleted(stored.current()));
        }
        let stored = self.stored_mut(group, message_seq)?;
        stored.make_tombstone(now);
        let tombstone = stored.current();
        self.append(group, &TimelineChange::Deleted { message: &tombstone, by: actor }, now);
        Ok(Applied::Deleted(tombstone))
    }

    fn purge(
        &mut self,
        group: GroupId,
        user: UserId,
        since: Option<DateTime<Utc>>,
        actor: UserId,
        now: DateTime<Utc>,
    ) -> Applied {
        let since = since.map(stored_time);
        let message_seqs: Vec<MessageSeq> = self
            .messages
            .range(messages_of(group))
            .filter(|(_, stored)| {
                stored.message.sender == user
                    && !stored.is_deleted()
                    && since.is_none_or(|since| stored.message.created_at >= since)
            })
            .map(|(_, stored)| stored.message.message_seq)
            .collect();
        if message_seqs.is_empty() {
            return Applied::Purged { message_seqs, event_seq: None };
        }
        for message_seq in &message_seqs {
            if let Some(stored) = self.messages.get_mut(&(group, *message_seq)) {
                stored.make_tombstone(now);
            }
        }
        let mut event_seq = None;
        for chunk in message_seqs.chunks(MAX_PURGED_PER_UPDATE) {
            let change = TimelineChange::Purged { user, message_seqs: chunk, by: actor };
            event_seq = Some(self.append(group, &change, now));
        }
        Applied::Purged { message_seqs, event_seq }
    }

    #[allow(clippy::too_many_arguments)] // the fields of `LogWrite::React`
    fn react(
        &mut self,
        group: GroupId,
        message_seq: MessageSeq,
        user: UserId,
        emoji: Emoji,
        change: ReactionChange,
        max_distinct_emojis: usize,
        update: ReactionUpdate,
        now: DateTime<Utc>,
    ) -> Result<Applied, WriteError> {
        let add = change == ReactionChange::Add;
        let stored = self.live(group, message_seq)?;
        let reacted = stored.reactions.get(&emoji).is_some_and(|users| users.contains(&user));
        if add && !reacted && !stored.reactions.contains_key(&emoji) && stored.reactions.len() >= max_distinct_emojis {
            return Err(WriteError::TooManyEmojis { message_seq, limit: max_distinct_emojis });
        }
        let changed = add != reacted;
        let stored = self.stored_mut(group, message_seq)?;
        if changed && add {
            stored.reactions.entry(emoji).or_default().insert(user);
        } else if changed && let Some(users) = stored.reactions.get_mut(&emoji) {
            users.remove(&user);
            if users.is_empty() {
                stored.reactions.remove(&emoji);
            }
        }
        let totals = stored.totals();
        let event_seq = (changed && update == ReactionUpdate::Append)
            .then(|| self.append(group, &TimelineChange::ReactionsChanged { message_seq, totals: &totals }, now));
        Ok(Applied::Reacted { totals, changed, event_seq })
    }

    fn pin(
        &mut self,
        group: GroupId,
        message_seq: MessageSeq,
        actor: UserId,
        change: PinChange,
        max_pins: usize,
        now: DateTime<Utc>,
    ) -> Result<Applied, WriteError> {
        let pin = change == PinChange::Pin;
        let stored = self.live(group, message_seq)?;
        if stored.message.pinned == pin {
            return Ok(Applied::Pinned { event_seq: None });
        }
        if pin {
            let pinned = self.messages.range(messages_of(group)).filter(|(_, m)| m.message.pinned).count();
            if pinned >= max_pins {
                return Err(WriteError::PinLimit { group, limit: max_pins });
            }
        }
        self.stored_mut(group, message_seq)?.message.pinned = pin;
        let logged = TimelineChange::pin(change, message_seq, actor);
        Ok(Applied::Pinned { event_seq: Some(self.append(group, &logged, now)) })
    }

    fn system(
        &mut self,
        source: String,
        outbox_id: i64,
        event: common::GroupEvent,
        now: DateTime<Utc>,
    ) -> Result<Applied, WriteError> {
        let digest = system_event_digest(&event);
        let key = (source, outbox_id);
        if let Some((event_seq, original)) = self.system_events.get(&key) {
            if *original != digest {
                return Err(WriteError::SystemEventConflict { origin: key.0, outbox_id, original_seq: *event_seq });
            }
            return Ok(Applied::SystemAppended { event_seq: *event_seq, duplicate: true });
        }
        let group = GroupId::from_trusted(event.group_id);
        let event_seq = self.append(group, &TimelineChange::System(&event), now);
        self.system_events.insert(key, (event_seq, digest));
        if let Some(joined) = joined_member(&event) {
            let latest = self.position(group).last_message_seq;
            let marker = self.read_markers.entry((group, joined)).or_default();
            *marker = (*marker).max(latest);
        }
        Ok(Applied::SystemAppended { event_seq, duplicate: false })
    }
}

#[async_trait]
impl MessageStore for MemoryMessageStore {
    async fn apply(&self, writes: Vec<LogWrite>, now: DateTime<Utc>) -> StoreResult<Committed> {
        let now = stored_time(now);
        let mut state = self.lock()?;
        let outcomes = writes.into_iter().map(|write| state.apply(write, now)).collect();
        Ok(Committed { outcomes, appended: std::mem::take(&mut state.appended) })
    }

    async fn get_messages(&self, group: GroupId, message_seqs: &[MessageSeq]) -> StoreResult<Vec<Message>> {
        let state = self.lock()?;
        let wanted: BTreeSet<MessageSeq> = message_seqs.iter().copied().collect();
        Ok(wanted.into_iter().filter_map(|seq| state.messages.get(&(group, seq)).map(StoredMessage::current)).collect())
    }

    async fn get_messages_by_id(&self, group: GroupId, ids: &[Uuid]) -> StoreResult<Vec<Message>> {
        let state = self.lock()?;
        let wanted: BTreeSet<MessageSeq> = ids.iter().filter_map(|id| state.ids.get(&(group, *id)).copied()).collect();
        Ok(wanted.into_iter().filter_map(|seq| state.messages.get(&(group, seq)).map(StoredMessage::current)).collect())
    }

    async fn list_messages(
        &self,
        group: GroupId,
        direction: Direction,
        anchor: Option<MessageSeq>,
        not_before: Option<DateTime<Utc>>,
        limit: PageSize,
    ) -> StoreResult<Vec<Message>> {
        let state = self.lock()?;
        let not_before = not_before.map(stored_time);
        let visible = |stored: &&StoredMessage| not_before.is_none_or(|bound| stored.message.created_at >= bound);
        let take = limit.get() as usize + 1;
        let listed: Vec<Message> = match direction {
            Direction::Forward => {
                let messages = state.messages.range(messages_after(group, anchor)).map(|(_, stored)| stored);
                messages.filter(visible).take(take).map(StoredMessage::current).collect()
            }
            Direction::Backward => {
                let messages = state.messages.range(messages_before(group, anchor)).rev().map(|(_, stored)| stored);
                messages.filter(visible).take(take).map(StoredMessage::current).collect()
            }
        };
        Ok(listed)
    }

    async fn get_updates(&self, group: GroupId, after: EventSeq, limit: PageSize) -> StoreResult<UpdatesRead> {
        let state = self.lock()?;
        let updates = state
            .updates
            .range(updates_after(group, after))
            .take(limit.get() as usize)
            .map(|(_, (update, _))| update.clone())
            .collect();
        Ok(UpdatesRead { updates, position: state.position(group) })
    }

    async fn log_positions(&self, groups: &[GroupId]) -> StoreResult<Vec<LogPosition>> {
        let state = self.lock()?;
        Ok(groups.iter().map(|group| state.position(*group)).collect())
    }

    async fn mark_read(&self, group: GroupId, user: UserId, message_seq: MessageSeq) -> StoreResult<MessageSeq> {
        let mut state = self.lock()?;
        let latest = state.position(group).last_message_seq;
        let marker = state.read_markers.entry((group, user)).or_default();
        *marker = (*marker).max(message_seq.min(latest));
        Ok(*marker)
    }

    async fn unread_counts(&self, user: UserId, groups: &[GroupId]) -> StoreResult<Vec<Unread>> {
        let state = self.lock()?;
        let unread = groups
            .iter()
            .map(|group| {
                let last_message_seq = state.position(*group).last_message_seq;
                let read_message_seq = state.read_markers.get(&(*group, user)).copied().unwrap_or_default();
                let after_marker = messages_after(*group, Some(read_message_seq));
                let unread_mentions =
                    state.messages.range(after_marker).filter(|(_, m)| m.message.content.mentions(user)).count();
                Unread {
                    group_id: *group,
                    unread_messages: (last_message_seq.get() - read_message_seq.get()).max(0),
                    unread_mentions: unread_mentions as i64,
                    last_message_seq,
                    read_message_seq,
                }
            })
            .collect();
        Ok(unread)
    }

    async fn unpublished(
        &self,
        lanes: &[i16],
        committed_before: DateTime<Utc>,
        after: OutboxCursor,
        limit: u32,
    ) -> StoreResult<Vec<StoredUpdate>> {
        let committed_before = stored_time(committed_before);
        let state = self.lock()?;
        let start = match after {
            Some((group, event_seq)) => Bound::Excluded((outbox_lane(group), group, event_seq)),
            None => Bound::Unbounded,
        };
        Ok(state
            .outbox
            .range((start, Bound::Unbounded))
            .filter(|((lane, _, _), committed_at)| lanes.contains(lane) && **committed_at < committed_before)
            .filter_map(|((_, group, event_seq), _)| state.updates.get(&(*group, *event_seq)))
            .take(limit as usize)
            .map(|(update, _)| update.clone())
            .collect())
    }

    async fn ack_outbox(&self, published: &[(GroupId, EventSeq)]) -> StoreResult<()> {
        let mut state = self.lock()?;
        for (group, event_seq) in published {
            state.outbox.remove(&(outbox_lane(*group), *group, *event_seq));
        }
        Ok(())
    }

    async fn orphaned_lanes(&self, committed_before: DateTime<Utc>) -> StoreResult<Vec<i16>> {
        let committed_before = stored_time(committed_before);
        let state = self.lock()?;
        let lanes: BTreeSet<i16> = state
            .outbox
            .iter()
            .filter(|(_, committed_at)| **committed_at < committed_before)
            .map(|((lane, _, _), _)| *lane)
            .collect();
        Ok(lanes.into_iter().collect())
    }

    async fn claim_lane(&self, lane: i16, owner: Uuid, lease: Duration, now: DateTime<Utc>) -> StoreResult<bool> {
        let now = stored_time(now);
        let mut state = self.lock()?;
        let free = match state.lane_leases.get(&lane) {
            None => true,
            Some((holder, until)) => *holder == owner || *until < now,
        };
        if free {
            state.lane_leases.insert(lane, (owner, lease_end(now, lease)));
        }
        Ok(free)
    }

    async fn release_lane(&self, lane: i16, owner: Uuid) -> StoreResult<()> {
        let mut state = self.lock()?;
        if state.lane_leases.get(&lane).is_some_and(|(holder, _)| *holder == owner) {
            state.lane_leases.remove(&lane);
        }
        Ok(())
    }

    async fn prune_updates(&self, before: DateTime<Utc>) -> StoreResult<u64> {
        let before = stored_time(before);
        let mut state = self.lock()?;
        // Per group: the last entry older than `before`, but never an entry still waiting
        // in the outbox (nor any after it): pruning drops a prefix of each log.
        let mut cutoffs: BTreeMap<GroupId, EventSeq> = BTreeMap::new();
        for ((group, event_seq), (_, created_at)) in &state.updates {
            if *created_at < before {
                cutoffs.insert(*group, *event_seq);
            }
        }
        for (_, group, event_seq) in state.outbox.keys() {
            if let Some(cutoff) = cutoffs.get_mut(group) {
                *cutoff = (*cutoff).min(event_seq.previous());
            }
        }
        let mut dropped = 0;
        for (group, cutoff) in cutoffs {
            let doomed: Vec<(GroupId, EventSeq)> =
                state.updates.range((group, EventSeq::ZERO)..=(group, cutoff)).map(|(key, _)| *key).collect();
            dropped += doomed.len() as u64;
            for key in doomed {
                state.updates.remove(&key);
            }
            if let Some(log) = state.logs.get_mut(&group) {
                log.oldest_retained_event_seq = log.oldest_retained_event_seq.max(cutoff.next());
            }
        }
        Ok(dropped)
    }

    async fn ping(&self) -> StoreResult<()> {
        self.lock().map(|_| ())
    }
}
