//! The messages service's orchestration: who may do what (from the groups service, through
//! the cached [`Directory`]), per-user rate limits, then one write through the group
//! committer or one read from the store. Takes only validated values.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use fanfare_bus::UpdateBus;
use fanfare_core::ids::{EventSeq, GroupId, MessageSeq, UserId};
use fanfare_core::paging::{Cursor, Page, PageSize};
use fanfare_core::rate_limit::UserLimit;
use fanfare_core::time::now;
use fanfare_proto::common::v1 as common;
use fanfare_proto::visibility::Standing;
use uuid::Uuid;

use crate::coalescer::ReactionCoalescer;
use crate::committer::Committer;
use crate::config::MessageLimits;
use crate::directory::{Access, Directory, MemberInfo, invalidate_for};
use crate::domain::visibility::LogView;
use crate::domain::{
    ActorRole, Content, Emoji, LogCursor, LogPosition, Message, MessageText, NewMessage, PinChange, ReactionChange,
    ReactionCount, ReactionUpdate, ResyncReason, StoredUpdate, Unread,
};
use crate::error::{MessagesError, MessagesResult};
use crate::invalidation::announce;
use crate::store::{Applied, Direction, LogWrite, MessageStore};

/// A validated SendMessage request.
#[derive(Debug, Clone)]
pub struct SendMessage {
    /// The group.
    pub group: GroupId,
    /// The idempotency key.
    pub client_message_id: crate::domain::ClientMessageId,
    /// What it says.
    pub content: Content,
}

/// What GetUpdates answers.
#[derive(Debug, Clone, PartialEq)]
pub enum UpdatesAnswer {
    /// A page of the log.
    Page {
        /// Updates after the requested position.
        updates: Vec<StoredUpdate>,
        /// Where the log stands.
        position: LogPosition,
        /// Whether more follow.
        has_more: bool,
    },
    /// The caller cannot read on from its position: it must reload the group's history.
    ResyncRequired(LogPosition, ResyncReason),
}

/// A relayed groups event to append.
#[derive(Debug, Clone)]
pub struct SystemEvent {
    /// The groups outbox row id.
    pub outbox_id: i64,
    /// The change (group id validated).
    pub event: common::GroupEvent,
}

/// The messages service.
pub struct MessagesService {
    store: Arc<dyn MessageStore>,
    committer: Committer,
    directory: Arc<dyn Directory>,
    coalescer: Arc<ReactionCoalescer>,
    bus: Arc<dyn UpdateBus>,
    limits: MessageLimits,
    rate_limits: RateLimits,
}

/// The per-user rate limits, one per kind of action; `None` where turned off.
#[derive(Debug)]
struct RateLimits {
    sends: Option<UserLimit>,
    changes: Option<UserLimit>,
    reactions: Option<UserLimit>,
}

impl RateLimits {
    /// The limits `limits` sets, counted across pods where the bus can keep them.
    fn new(limits: &MessageLimits, bus: &dyn UpdateBus) -> Self {
        let shared = bus.shared_limits();
        Self {
            sends: UserLimit::new("sends", limits.user_sends_per_second, limits.user_sends_burst, shared.clone()),
            changes: UserLimit::new(
                "changes",
                limits.user_changes_per_second,
                limits.user_changes_burst,
                shared.clone(),
            ),
            reactions: UserLimit::new(
                "reactions",
                limits.user_reactions_per_second,
                limits.user_reactions_burst,
                shared,
            ),
        }
    }
}

/// Takes one unit of `limit` for `user`, refusing `RateLimited` when none is left.
async fn check_limit(limit: Option<&UserLimit>, user: UserId) -> MessagesResult<()> {
    let Some(limit) = limit else { return Ok(()) };
    limit.check(user).await.map_err(|retry_after| MessagesError::RateLimited {
        user,
        action: limit.action(),
        retry_after,
    })
}

impl MessagesService {
    /// A service over its parts.
    pub fn new(
        store: Arc<dyn MessageStore>,
        committer: Committer,
        directory: Arc<dyn Directory>,
        coalescer: Arc<ReactionCoalescer>,
        bus: Arc<dyn UpdateBus>,
        limits: MessageLimits,
    ) -> Self {
        let rate_limits = RateLimits::new(&limits, bus.as_ref());
        Self { store, committer, directory, coalescer, bus, limits, rate_limits }
    }

    /// The limits in force (the adapter parses with them).
    pub fn limits(&self) -> &MessageLimits {
        &self.limits
    }

    /// The caller's standing; a group that does not exist (or is private) is `NOT_FOUND`.
    async fn access(&self, group: GroupId, user: UserId) -> MessagesResult<Access> {
        Ok(self.directory.access(group, user).await?)
    }

    /// The caller's membership, which reading and writing need.
    async fn member(&self, group: GroupId, user: UserId) -> MessagesResult<(Access, MemberInfo)> {
        let access = self.access(group, user).await?;
        match access.membership.clone() {
            Some(member) => Ok((access, member)),
            // A private chat is answered as if it did not exist, even when its settings are
            // cached from a member's call (the groups service itself hides it from strangers).
            None if access.group.kind == common::GroupKind::Chat => Err(MessagesError::GroupNotFound(group)),
            None => Err(MessagesError::NotAMember { group, user }),
        }
    }

    /// A membership that may change the group's timeline: the group must not be archived.
    async fn writer(&self, group: GroupId, user: UserId) -> MessagesResult<(Access, MemberInfo)> {
        let (access, member) = self.member(group, user).await?;
        if access.group.archived {
            return Err(MessagesError::Archived(group));
        }
        Ok((access, member))
    }

    /// A membership that may add to the timeline: a writer who is not muted (a muted member
    /// may neither post, edit nor react; they may still read and delete their own messages).
    async fn unmuted_writer(&self, group: GroupId, user: UserId) -> MessagesResult<(Access, MemberInfo)> {
        let (access, member) = self.writer(group, user).await?;
        if let Some(until) = member.muted_until.filter(|until| *until > now()) {
            return Err(MessagesError::Muted { group, user, until });
        }
        Ok((access, member))
    }

    /// Refuses a moderator acting on `target`'s messages unless they outrank `target` (the
    /// owner outranks admins, admins outrank members; acting on one's own is always allowed).
    async fn check_outranks(
        &self,
        group: GroupId,
        actor: UserId,
        member: &MemberInfo,
        target: UserId,
    ) -> MessagesResult<()> {
        if actor == target {
            return Ok(());
        }
        let theirs = self.directory.access(group, target).await?.membership;
        if member.outranks(theirs.as_ref()) {
            return Ok(());
        }
        Err(MessagesError::PermissionDenied(format!(
            "user {actor} does not outrank user {target} in group {group}: only the owner moderates an admin's \
             messages, and nobody the owner's"
        )))
    }

    /// A moderator's membership.
    async fn moderator(&self, group: GroupId, user: UserId) -> MessagesResult<(Access, MemberInfo)> {
        let (access, member) = self.writer(group, user).await?;
        if !member.moderates() {
            return Err(MessagesError::PermissionDenied(format!(
                "only the owner or an admin of group {group} may do this"
            )));
        }
        Ok((access, member))
    }

    /// The earliest message time a member may read: their join time when the group hides
    /// earlier history from new members (moderators always see everything).
    fn visible_since(access: &Access, member: &MemberInfo) -> Option<DateTime<Utc>> {
        Self::standing(access, member).history_hidden_before()
    }

    /// What decides what of the group's log the member reads whole, for the rules live
    /// delivery applies too (`fanfare_proto::visibility`).
    fn standing(access: &Access, member: &MemberInfo) -> Standing<DateTime<Utc>> {
        Standing {
            joined_at: member.joined_at,
            moderates: member.moderates(),
            history_visible_to_new_members: access.group.history_visible_to_new_members,
            broadcast: access.group.kind == common::GroupKind::Broadcast,
        }
    }

    /// What of the group's log `reader` may not see: older messages' content (as
    /// [`Self::visible_since`]), and, for a plain member of a BROADCAST group, who else is in
    /// it (the rule the groups service applies to listing members).
    fn log_view(reader: UserId, access: &Access, member: &MemberInfo) -> LogView {
        LogView {
            reader,
            messages_before: Self::visible_since(access, member),
            hides_audience: Self::standing(access, member).hides_audience(),
        }
    }

    /// Posts a message.
    pub async fn send_message(&self, actor: UserId, request: SendMessage) -> MessagesResult<(Message, bool)> {
        check_limit(self.rate_limits.sends.as_ref(), actor).await?;
        let (access, member) = self.unmuted_writer(request.group, actor).await?;
        let admins_only = access.group.post_policy == common::PostPolicy::AdminsOnly
            || access.group.kind == common::GroupKind::Broadcast;
        if admins_only && !member.moderates() {
            return Err(MessagesError::PermissionDenied(format!(
                "only the owner and admins post in group {}",
                request.group
            )));
        }
        if request.content.mentions_all && !member.moderates() {
            return Err(MessagesError::PermissionDenied("only the owner and admins may mention @all".to_owned()));
        }
        let slow_mode = (!access.group.slow_mode.is_zero() && !member.moderates()).then_some(access.group.slow_mode);
        let message = NewMessage {
            group_id: request.group,
            sender: actor,
            client_message_id: request.client_message_id,
            content: request.content,
        };
        match self.committer.submit(LogWrite::Post { message, slow_mode }).await? {
            Applied::Posted { message, duplicate } => Ok((message, duplicate)),
            other => Err(unexpected("Post", &other)),
        }
    }

    /// Edits a message's text (its sender, within the edit window).
    pub async fn edit_message(
        &self,
        actor: UserId,
        group: GroupId,
        message_seq: MessageSeq,
        text: MessageText,
    ) -> MessagesResult<Message> {
        check_limit(self.rate_limits.changes.as_ref(), actor).await?;
        self.unmuted_writer(group, actor).await?;
        let write = LogWrite::Edit { group, message_seq, editor: actor, text, edit_window: self.limits.edit_window() };
        match self.committer.submit(write).await? {
            Applied::Edited(message) => Ok(message),
            other => Err(unexpected("Edit", &other)),
        }
    }

    /// Deletes a message (its sender, or an owner or admin).
    pub async fn delete_message(
        &self,
        actor: UserId,
        group: GroupId,
        message_seq: MessageSeq,
    ) -> MessagesResult<Message> {
        check_limit(self.rate_limits.changes.as_ref(), actor).await?;
        let (_, member) = self.writer(group, actor).await?;
        if member.moderates() {
            // The sender never changes: read it first, and refuse a moderator who does not
            // outrank them (a message that does not exist is answered by the write).
            let found = self.store.get_messages(group, &[message_seq]).await?;
            if let Some(message) = found.first() {
                self.check_outranks(group, actor, &member, message.sender).await?;
            }
        }
        let actor_role = if member.moderates() { ActorRole::Moderator } else { ActorRole::Member };
        let write = LogWrite::Delete { group, message_seq, actor, actor_role };
        match self.committer.submit(write).await? {
            Applied::Deleted(message) => Ok(message),
            other => Err(unexpected("Delete", &other)),
        }
    }

    /// Deletes every message of `user` (since a time) in one commit, listed by one update per
    /// [`MAX_PURGED_PER_UPDATE`](crate::domain::MAX_PURGED_PER_UPDATE) messages (owner or
    /// admin).
    pub async fn purge_user_messages(
        &self,
        actor: UserId,
        group: GroupId,
        user: UserId,
        since: Option<DateTime<Utc>>,
    ) -> MessagesResult<(i64, Option<EventSeq>)> {
        check_limit(self.rate_limits.changes.as_ref(), actor).await?;
        let (_, member) = self.moderator(group, actor).await?;
        self.check_outranks(group, actor, &member, user).await?;
        // Every message was sent after the epoch, so an earlier `since` means all of them;
        // dropping it also keeps times PostgreSQL cannot store (before 4713 BC) out of the query.
        let since = since.filter(|since| *since > DateTime::UNIX_EPOCH);
        match self.committer.submit(LogWrite::Purge { group, user, since, actor }).await? {
            Applied::Purged { message_seqs, event_seq } => {
                Ok((fanfare_core::wire::int64(message_seqs.len()), event_seq))
            }
            other => Err(unexpected("Purge", &other)),
        }
    }

    /// Adds or removes the caller's reaction; large groups coalesce the update.
    pub async fn react(
        &self,
        actor: UserId,
        group: GroupId,
        message_seq: MessageSeq,
        emoji: Emoji,
        change: ReactionChange,
    ) -> MessagesResult<Vec<ReactionCount>> {
        check_limit(self.rate_limits.reactions.as_ref(), actor).await?;
        let (access, _) = self.unmuted_writer(group, actor).await?;
        let coalesce = access.group.member_count > self.limits.reaction_coalesce_above_members;
        let write = LogWrite::React {
            group,
            message_seq,
            user: actor,
            emoji,
            change,
            max_distinct_emojis: self.limits.max_distinct_emojis,
            update: if coalesce { ReactionUpdate::Coalesce } else { ReactionUpdate::Append },
        };
        match self.committer.submit(write).await? {
            Applied::Reacted { totals, changed, .. } => {
                if changed && coalesce {
                    self.coalescer.mark(group, message_seq);
                }
                Ok(totals)
            }
            other => Err(unexpected("React", &other)),
        }
    }

    /// Pins or unpins a message (owner or admin).
    pub async fn pin(
        &self,
        actor: UserId,
        group: GroupId,
        message_seq: MessageSeq,
        change: PinChange,
    ) -> MessagesResult<()> {
        check_limit(self.rate_limits.changes.as_ref(), actor).await?;
        self.moderator(group, actor).await?;
        let write = LogWrite::Pin { group, message_seq, actor, change, max_pins: self.limits.max_pins };
        match self.committer.submit(write).await? {
            Applied::Pinned { .. } => Ok(()),
            other => Err(unexpected("Pin", &other)),
        }
    }

    /// Pages through history by message_seq.
    pub async fn list_messages(
        &self,
        actor: UserId,
        group: GroupId,
        direction: Direction,
        anchor: Option<MessageSeq>,
        size: PageSize,
    ) -> MessagesResult<Page<Message>> {
        let (access, member) = self.member(group, actor).await?;
        let not_before = Self::visible_since(&access, &member);
        let rows = self.store.list_messages(group, direction, anchor, not_before, size).await?;
        Ok(Page::from_overfetch(rows, size, |message| Cursor(vec![message.message_seq.get()])))
    }

    /// Reads messages by id and by seq; those not found or not visible are reported missing.
    pub async fn get_messages(
        &self,
        actor: UserId,
        group: GroupId,
        ids: &[Uuid],
        seqs: &[MessageSeq],
    ) -> MessagesResult<(Vec<Message>, Vec<Uuid>, Vec<MessageSeq>)> {
        let (access, member) = self.member(group, actor).await?;
        let not_before = Self::visible_since(&access, &member);
        let visible = |message: &Message| not_before.is_none_or(|since| message.created_at >= since);
        let mut found: Vec<Message> = self.store.get_messages_by_id(group, ids).await?;
        for message in self.store.get_messages(group, seqs).await? {
            if !found.iter().any(|existing| existing.message_seq == message.message_seq) {
                found.push(message);
            }
        }
        found.retain(visible);
        found.sort_by_key(|message| message.message_seq);
        let missing_ids = ids.iter().copied().filter(|id| !found.iter().any(|message| message.id == *id)).collect();
        let missing_seqs =
            seqs.iter().copied().filter(|seq| !found.iter().any(|message| message.message_seq == *seq)).collect();
        Ok((found, missing_ids, missing_seqs))
    }

    /// Reads the update log after `after`, or says the caller must resync.
    pub async fn get_updates(
        &self,
        actor: UserId,
        group: GroupId,
        after: LogCursor,
        size: PageSize,
    ) -> MessagesResult<UpdatesAnswer> {
        let (access, member) = self.member(group, actor).await?;
        let read = self.store.get_updates(group, after.event_seq, size).await?;
        let position = read.position;
        let seq = after.event_seq;
        // Entries after `after` start at after + 1; if that one is gone, the caller has a hole
        // it cannot fill from the log. (`after < last` first: any `after` is valid input, and
        // `after + 1` must not overflow on i64::MAX.)
        if seq < position.last_event_seq && seq.next() < position.oldest_retained_event_seq {
            return Ok(UpdatesAnswer::ResyncRequired(position, ResyncReason::PastRetention));
        }
        // A position past the end was never handed out by this log: the log went backwards
        // (a restore, an asynchronous failover) and the caller holds history it no longer
        // has. Carrying on would mix two histories under the same seqs.
        if seq > position.last_event_seq {
            return Ok(UpdatesAnswer::ResyncRequired(position, ResyncReason::LogWentBack));
        }
        // The same, when the log has since grown past the caller's position again: the entry
        // the caller holds there is not the log's.
        if reissued(after, &read.updates, &position) {
            return Ok(UpdatesAnswer::ResyncRequired(position, ResyncReason::LogReissued));
        }
        let mut page = read.updates;
        page.truncate(within_page_bytes(&page));
        let has_more = page.last().is_some_and(|last| last.event_seq < position.last_event_seq);
        let view = Self::log_view(actor, &access, &member);
        let updates = if view.sees_all() { page } else { page.into_iter().map(|update| view.redact(update)).collect() };
        Ok(UpdatesAnswer::Page { updates, position, has_more })
    }

    /// Moves the caller's read marker forward.
    pub async fn mark_read(
        &self,
        actor: UserId,
        group: GroupId,
        message_seq: MessageSeq,
    ) -> MessagesResult<MessageSeq> {
        self.member(group, actor).await?;
        Ok(self.store.mark_read(group, actor, message_seq).await?)
    }

    /// Unread counts for the given groups (each must be one of the caller's), or for all of
    /// the caller's groups when none are given.
    pub async fn unread_counts(&self, actor: UserId, groups: &[GroupId]) -> MessagesResult<Vec<Unread>> {
        let groups = if groups.is_empty() {
            self.directory.user_groups(actor).await?
        } else {
            for group in groups {
                self.member(*group, actor).await?;
            }
            groups.to_vec()
        };
        Ok(self.store.unread_counts(actor, &groups).await?)
    }

    /// Appends relayed groups events, in order; returns each one's event_seq.
    /// Appends events relayed by `source` (the caller's name), idempotent on (source,
    /// outbox id) with the content compared.
    pub async fn append_system_updates(
        &self,
        source: &str,
        events: Vec<SystemEvent>,
    ) -> MessagesResult<Vec<(i64, GroupId, EventSeq)>> {
        let writes = events
            .iter()
            .map(|system| LogWrite::System {
                source: source.to_owned(),
                outbox_id: system.outbox_id,
                event: system.event.clone(),
            })
            .collect();
        // Invalidate before the entries become visible too: the groups service committed these
        // changes before relaying them, so whatever is fetched from here on already reflects
        // them, and nobody reads the change in the log while this pod still trusts the old
        // membership. (Invalidated again below, against fetches that were already in flight.)
        for system in &events {
            invalidate_for(self.directory.as_ref(), &system.event);
        }
        let results = self.committer.submit_all(writes).await;
        let mut appended = Vec::with_capacity(events.len());
        for (system, result) in events.iter().zip(results) {
            // Invalidate before answering: from here on this pod refuses a removed member, and
            // the other pods as soon as the announcement reaches them.
            invalidate_for(self.directory.as_ref(), &system.event);
            announce(self.bus.as_ref(), &system.event).await;
            match result? {
                Applied::SystemAppended { event_seq, .. } => {
                    appended.push((system.outbox_id, GroupId::from_trusted(system.event.group_id), event_seq));
                }
                other => return Err(unexpected("System", &other)),
            }
        }
        Ok(appended)
    }
}

/// A store that answered a write with the outcome of another kind of write: a bug.
fn unexpected(write: &str, applied: &Applied) -> MessagesError {
    MessagesError::Store(crate::store::StoreError::Internal(anyhow::anyhow!(
        "a {write} write was answered with {applied:?}"
    )))
}

/// Most payload bytes one `GetUpdates` page carries: a page is cut short (answering
/// `has_more`) before it grows past this, whatever its row limit, so it stays well inside
/// every caller's 4 MiB message limit (fanout's catch-up reads included).
pub const MAX_UPDATES_PAGE_BYTES: usize = 1 << 20;

/// Whether the log holds another entry at `after` than the caller received: the token the
/// caller holds differs from the one the next entry links to (or, at the end of the log,
/// from the latest entry's). Unknown tokens (0, on either side) are not compared.
fn reissued(after: LogCursor, page: &[StoredUpdate], position: &LogPosition) -> bool {
    if after.entry_token == 0 || after.event_seq == EventSeq::ZERO {
        return false;
    }
    let held_by_log = match page.first() {
        // A page holds only entries after `after`, so `after` is not the last seq there is.
        Some(next) if next.event_seq == after.event_seq.next() => next.previous_entry_token(),
        None if after.event_seq == position.last_event_seq => position.last_entry_token,
        _ => 0,
    };
    held_by_log != 0 && held_by_log != after.entry_token
}

/// How many of `updates` fit in one page by size: at least one (a single update is bounded
/// by the text and attachment limits), then as many as stay within [`MAX_UPDATES_PAGE_BYTES`].
fn within_page_bytes(updates: &[StoredUpdate]) -> usize {
    let mut total = 0;
    for (index, update) in updates.iter().enumerate() {
        total += update.payload.len();
        if total > MAX_UPDATES_PAGE_BYTES && index > 0 {
            return index;
        }
    }
    updates.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(bytes: usize) -> StoredUpdate {
        StoredUpdate {
            group_id: GroupId::from_trusted(1),
            event_seq: EventSeq::from_trusted(1),
            payload: bytes::Bytes::from(vec![0; bytes]),
        }
    }

    #[test]
    fn a_page_is_cut_by_size_but_always_holds_one_update() {
        let small: Vec<StoredUpdate> = (0..10).map(|_| update(100)).collect();
        assert_eq!(within_page_bytes(&small), 10);
        let big: Vec<StoredUpdate> = (0..10).map(|_| update(MAX_UPDATES_PAGE_BYTES / 3)).collect();
        assert_eq!(within_page_bytes(&big), 3, "as many as fit");
        let huge = vec![update(MAX_UPDATES_PAGE_BYTES * 2), update(1)];
        assert_eq!(within_page_bytes(&huge), 1, "one update always goes");
        assert_eq!(within_page_bytes(&[]), 0);
    }
}
