//! The writes of a batch that change existing messages: edits, deletes, purges, reactions
//! and pins. They are rare next to posts (or coalesced, for reaction updates), so each
//! takes a couple of statements of its own, inside the batch's transaction and after the
//! batch's queue was flushed, so they see every earlier write of the batch. The group's log
//! row is locked by the batch, so nothing else changes these messages meanwhile.
//!
//! Each one reads and checks first, and only then changes anything: a refused write leaves
//! no trace.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use fanfare_core::ids::{EventSeq, GroupId, MessageSeq, UserId};
use sqlx::PgConnection;

use super::rows::{self, During as _, EVERYONE, mention_rows, sorted_totals, totals_from};
use crate::domain::rules::edit_window_closed;
use crate::domain::updates::TimelineChange;
use crate::domain::{
    ActorRole, Content, Emoji, MAX_PURGED_PER_UPDATE, Message, MessageText, PinChange, ReactionChange, ReactionCount,
    ReactionUpdate,
};
use crate::store::{Applied, LogWrite, StoreError, StoreResult, WriteError};

/// What one write came to.
type Outcome = Result<Applied, WriteError>;

/// What these writes need of the batch they belong to (`batch::Batch`, which calls in here):
/// its commit time, and appending an update to a group's log. Named here, so the batch
/// depends on this file and not the other way round.
pub(super) trait BatchLog {
    /// The commit time of the batch.
    fn now(&self) -> DateTime<Utc>;

    /// Queues the update of a change at the group's next event_seq, and returns it.
    fn append(&mut self, group: GroupId, change: &TimelineChange<'_>) -> StoreResult<EventSeq>;
}

/// Applies one write that changes existing messages.
pub(super) async fn apply(
    connection: &mut PgConnection,
    batch: &mut impl BatchLog,
    write: LogWrite,
) -> StoreResult<Outcome> {
    match write {
        LogWrite::Edit { group, message_seq, editor, text, edit_window } => {
            edit(connection, batch, group, message_seq, editor, text, edit_window).await
        }
        LogWrite::Delete { group, message_seq, actor, actor_role } => {
            delete(connection, batch, group, message_seq, actor, actor_role).await
        }
        LogWrite::Purge { group, user, since, actor } => purge(connection, batch, group, user, since, actor).await,
        LogWrite::React { group, message_seq, user, emoji, change, max_distinct_emojis, update } => {
            let reaction = Reaction { user, emoji, change, max_distinct_emojis, update };
            react(connection, batch, group, message_seq, reaction).await
        }
        LogWrite::EmitReactionTotals { group, message_seq } => emit_totals(connection, batch, group, message_seq).await,
        LogWrite::Pin { group, message_seq, actor, change, max_pins } => {
            pin_message(connection, batch, group, message_seq, actor, change, max_pins).await
        }
        LogWrite::Post { .. } | LogWrite::System { .. } => {
            Err(StoreError::Internal(anyhow::Error::msg("posts and system events are applied by the batch itself")))
        }
    }
}

fn not_found(group: GroupId, message_seq: MessageSeq) -> Outcome {
    Err(WriteError::MessageNotFound { group, message_seq })
}

async fn edit(
    connection: &mut PgConnection,
    batch: &mut impl BatchLog,
    group: GroupId,
    message_seq: MessageSeq,
    editor: UserId,
    text: MessageText,
    edit_window: Duration,
) -> StoreResult<Outcome> {
    let Some(message) = rows::message(connection, group, message_seq).await? else {
        return Ok(not_found(group, message_seq));
    };
    if message.sender != editor {
        return Ok(Err(WriteError::NotSender(message_seq)));
    }
    if message.deleted_at.is_some() {
        return Ok(Err(WriteError::Deleted(message_seq)));
    }
    if edit_window_closed(message.created_at, edit_window, batch.now()) {
        return Ok(Err(WriteError::EditWindowClosed { message_seq, window: edit_window }));
    }
    sqlx::query(
        "UPDATE messages.messages SET text = $3, edited_at = $4, version = version + 1 \
         WHERE group_id = $1 AND message_seq = $2",
    )
    .bind(group.get())
    .bind(message_seq.get())
    .bind(text.as_str())
    .bind(batch.now())
    .execute(&mut *connection)
    .await
    .during("editing a message")?;
    let edited = Message {
        content: Content { text, ..message.content },
        edited_at: Some(batch.now()),
        version: message.version + 1,
        ..message
    };
    batch.append(group, &TimelineChange::Edited(&edited))?;
    Ok(Ok(Applied::Edited(edited)))
}

async fn delete(
    connection: &mut PgConnection,
    batch: &mut impl BatchLog,
    group: GroupId,
    message_seq: MessageSeq,
    actor: UserId,
    actor_role: ActorRole,
) -> StoreResult<Outcome> {
    let Some(message) = rows::message(connection, group, message_seq).await? else {
        return Ok(not_found(group, message_seq));
    };
    if message.sender != actor && actor_role == ActorRole::Member {
        return Ok(Err(WriteError::NotSender(message_seq)));
    }
    if message.deleted_at.is_some() {
        return Ok(Ok(Applied::Deleted(message)));
    }
    let tombstone = make_tombstones(connection, group, vec![message], batch.now()).await?.pop();
    let tombstone = tombstone.ok_or_else(|| rows::corrupt(format!("no tombstone for message {message_seq}")))?;
    batch.append(group, &TimelineChange::Deleted { message: &tombstone, by: actor })?;
    Ok(Ok(Applied::Deleted(tombstone)))
}

async fn purge(
    connection: &mut PgConnection,
    batch: &mut impl BatchLog,
    group: GroupId,
    user: UserId,
    since: Option<DateTime<Utc>>,
    actor: UserId,
) -> StoreResult<Outcome> {
    // Only what the tombstoning needs (seqs and mention rows), never the content: a purge of
    // a prolific user reads a few bytes per message.
    let live: Vec<(i64, bool, Vec<i64>)> = sqlx::query_as(
        "SELECT message_seq, mentions_all, mentions FROM messages.messages \
         WHERE group_id = $1 AND sender_id = $2 AND deleted_at IS NULL \
         AND created_at >= COALESCE($3, '-infinity'::timestamptz) ORDER BY message_seq",
    )
    .bind(group.get())
    .bind(user.get())
    .bind(since)
    .fetch_all(&mut *connection)
    .await
    .during("reading messages to purge")?;
    if live.is_empty() {
        return Ok(Ok(Applied::Purged { message_seqs: Vec::new(), event_seq: None }));
    }
    let mut mentioned_users = BTreeSet::new();
    for (_, mentions_all, mentions) in &live {
        if *mentions_all {
            mentioned_users.insert(EVERYONE);
        } else {
            mentioned_users.extend(mentions.iter().copied());
        }
    }
    let message_seqs: Vec<MessageSeq> =
        live.into_iter().map(|(message_seq, ..)| MessageSeq::from_trusted(message_seq)).collect();
    clear_messages(connection, group, &message_seqs, mentioned_users.into_iter().collect(), batch.now()).await?;
    let mut event_seq = None;
    for chunk in message_seqs.chunks(MAX_PURGED_PER_UPDATE) {
        let change = TimelineChange::Purged { user, message_seqs: chunk, by: actor };
        event_seq = Some(batch.append(group, &change)?);
    }
    Ok(Ok(Applied::Purged { message_seqs, event_seq }))
}

/// Turns live messages of one group into tombstones: content, pin, reactions and mentions
/// cleared. Returns the tombstones, in the order given.
async fn make_tombstones(
    connection: &mut PgConnection,
    group: GroupId,
    live: Vec<Message>,
    now: DateTime<Utc>,
) -> StoreResult<Vec<Message>> {
    let message_seqs: Vec<MessageSeq> = live.iter().map(|message| message.message_seq).collect();
    let mentioned_users: BTreeSet<i64> = live.iter().flat_map(|message| mention_rows(&message.content)).collect();
    clear_messages(connection, group, &message_seqs, mentioned_users.into_iter().collect(), now).await?;
    Ok(live
        .into_iter()
        .map(|message| Message {
            content: Content::default(),
            deleted_at: Some(now),
            reactions: Vec::new(),
            pinned: false,
            ..message
        })
        .collect())
}

/// Clears messages of one group: content, pin, reactions and mentions. `mentioned_users` are
/// the users their mention rows name (every mention row of these messages names one of them:
/// matching users and messages separately is exact, and follows the (group, user, message)
/// index).
async fn clear_messages(
    connection: &mut PgConnection,
    group: GroupId,
    message_seqs: &[MessageSeq],
    mentioned_users: Vec<i64>,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let message_seqs: Vec<i64> = message_seqs.iter().map(|seq| seq.get()).collect();
    sqlx::query(
        "WITH unreacted AS ( \
           DELETE FROM messages.reactions WHERE group_id = $1 AND message_seq = ANY($2)), \
         uncounted AS ( \
           DELETE FROM messages.reaction_counts WHERE group_id = $1 AND message_seq = ANY($2)), \
         unmentioned AS ( \
           DELETE FROM messages.message_mentions \
           WHERE group_id = $1 AND user_id = ANY($4) AND message_seq = ANY($2)) \
         UPDATE messages.messages SET text = '', attachments = ''::bytea, reply_to_message_seq = NULL, \
           mentions = '{}', mentions_all = false, deleted_at = $3, pinned_at = NULL \
         WHERE group_id = $1 AND message_seq = ANY($2)",
    )
    .bind(group.get())
    .bind(&message_seqs)
    .bind(now)
    .bind(mentioned_users)
    .execute(&mut *connection)
    .await
    .during("deleting messages")?;
    Ok(())
}

/// The fields of `LogWrite::React` past the message.
struct Reaction {
    user: UserId,
    emoji: Emoji,
    change: ReactionChange,
    max_distinct_emojis: usize,
    update: ReactionUpdate,
}

async fn react(
    connection: &mut PgConnection,
    batch: &mut impl BatchLog,
    group: GroupId,
    message_seq: MessageSeq,
    reaction: Reaction,
) -> StoreResult<Outcome> {
    let add = reaction.change == ReactionChange::Add;
    let state: Option<(bool, bool, Vec<String>, Vec<i64>)> = sqlx::query_as(
        "SELECT m.deleted_at IS NOT NULL, \
           EXISTS (SELECT 1 FROM messages.reactions r WHERE r.group_id = $1 AND r.message_seq = $2 \
                   AND r.user_id = $3 AND r.emoji = $4), \
           COALESCE((SELECT array_agg(c.emoji ORDER BY c.emoji) FROM messages.reaction_counts c \
                     WHERE c.group_id = $1 AND c.message_seq = $2), '{}'), \
           COALESCE((SELECT array_agg(c.count ORDER BY c.emoji) FROM messages.reaction_counts c \
                     WHERE c.group_id = $1 AND c.message_seq = $2), '{}') \
         FROM messages.messages m WHERE m.group_id = $1 AND m.message_seq = $2",
    )
    .bind(group.get())
    .bind(message_seq.get())
    .bind(reaction.user.get())
    .bind(reaction.emoji.as_str())
    .fetch_optional(&mut *connection)
    .await
    .during("reading reactions")?;
    let Some((deleted, reacted, emojis, counts)) = state else {
        return Ok(not_found(group, message_seq));
    };
    if deleted {
        return Ok(Err(WriteError::Deleted(message_seq)));
    }
    let mut totals = totals_from(emojis, counts)?;
    let known_emoji = totals.iter().position(|total| total.emoji == reaction.emoji);
    if add && !reacted && known_emoji.is_none() && totals.len() >= reaction.max_distinct_emojis {
        return Ok(Err(WriteError::TooManyEmojis { message_seq, limit: reaction.max_distinct_emojis }));
    }
    let changed = add != reacted;
    if !changed {
        return Ok(Ok(Applied::Reacted { totals, changed, event_seq: None }));
    }
    let sql = if add {
        "WITH reacted AS ( \
           INSERT INTO messages.reactions (group_id, message_seq, user_id, emoji, created_at) \
           VALUES ($1, $2, $3, $4, $5)) \
         INSERT INTO messages.reaction_counts AS c (group_id, message_seq, emoji, count) VALUES ($1, $2, $4, 1) \
         ON CONFLICT (group_id, message_seq, emoji) DO UPDATE SET count = c.count + 1"
    } else {
        // Totals rows exist only while positive: the last reaction of an emoji drops its row.
        "WITH unreacted AS ( \
           DELETE FROM messages.reactions \
           WHERE group_id = $1 AND message_seq = $2 AND user_id = $3 AND emoji = $4), \
         lowered AS ( \
           UPDATE messages.reaction_counts SET count = count - 1 \
           WHERE group_id = $1 AND message_seq = $2 AND emoji = $4 AND count > 1) \
         DELETE FROM messages.reaction_counts \
         WHERE group_id = $1 AND message_seq = $2 AND emoji = $4 AND count = 1"
    };
    let query = sqlx::query(sql).bind(group.get()).bind(message_seq.get()).bind(reaction.user.get());
    let query = query.bind(reaction.emoji.as_str());
    let query = if add { query.bind(batch.now()) } else { query };
    query.execute(&mut *connection).await.during("changing a reaction")?;
    match (known_emoji, add) {
        (Some(index), true) => totals[index].count += 1,
        (None, true) => {
            totals.push(ReactionCount { emoji: reaction.emoji, count: 1 });
            totals = sorted_totals(totals);
        }
        (Some(index), false) if totals[index].count > 1 => totals[index].count -= 1,
        (Some(index), false) => {
            totals.remove(index);
        }
        (None, false) => return Err(rows::corrupt(format!("a reaction of message {message_seq} has no total"))),
    }
    let event_seq = if reaction.update == ReactionUpdate::Append {
        Some(batch.append(group, &TimelineChange::ReactionsChanged { message_seq, totals: &totals })?)
    } else {
        None
    };
    Ok(Ok(Applied::Reacted { totals, changed, event_seq }))
}

async fn emit_totals(
    connection: &mut PgConnection,
    batch: &mut impl BatchLog,
    group: GroupId,
    message_seq: MessageSeq,
) -> StoreResult<Outcome> {
    let totals: Option<(Vec<String>, Vec<i64>)> = sqlx::query_as(
        "SELECT COALESCE((SELECT array_agg(c.emoji ORDER BY c.emoji) FROM messages.reaction_counts c \
                          WHERE c.group_id = $1 AND c.message_seq = $2), '{}'), \
                COALESCE((SELECT array_agg(c.count ORDER BY c.emoji) FROM messages.reaction_counts c \
                          WHERE c.group_id = $1 AND c.message_seq = $2), '{}') \
         FROM messages.messages m WHERE m.group_id = $1 AND m.message_seq = $2",
    )
    .bind(group.get())
    .bind(message_seq.get())
    .fetch_optional(&mut *connection)
    .await
    .during("reading reaction totals")?;
    let Some((emojis, counts)) = totals else {
        return Ok(not_found(group, message_seq));
    };
    let totals = totals_from(emojis, counts)?;
    let event_seq = batch.append(group, &TimelineChange::ReactionsChanged { message_seq, totals: &totals })?;
    Ok(Ok(Applied::ReactionTotalsEmitted { event_seq }))
}

async fn pin_message(
    connection: &mut PgConnection,
    batch: &mut impl BatchLog,
    group: GroupId,
    message_seq: MessageSeq,
    actor: UserId,
    change: PinChange,
    max_pins: usize,
) -> StoreResult<Outcome> {
    let pin = change == PinChange::Pin;
    let state: Option<(bool, bool, i64)> = sqlx::query_as(
        "SELECT m.deleted_at IS NOT NULL, m.pinned_at IS NOT NULL, \
           (SELECT count(*) FROM messages.messages p WHERE p.group_id = $1 AND p.pinned_at IS NOT NULL) \
         FROM messages.messages m WHERE m.group_id = $1 AND m.message_seq = $2",
    )
    .bind(group.get())
    .bind(message_seq.get())
    .fetch_optional(&mut *connection)
    .await
    .during("reading pins")?;
    let Some((deleted, pinned, pinned_in_group)) = state else {
        return Ok(not_found(group, message_seq));
    };
    if deleted {
        return Ok(Err(WriteError::Deleted(message_seq)));
    }
    if pinned == pin {
        return Ok(Ok(Applied::Pinned { event_seq: None }));
    }
    if pin && usize::try_from(pinned_in_group).unwrap_or(usize::MAX) >= max_pins {
        return Ok(Err(WriteError::PinLimit { group, limit: max_pins }));
    }
    sqlx::query("UPDATE messages.messages SET pinned_at = $3 WHERE group_id = $1 AND message_seq = $2")
        .bind(group.get())
        .bind(message_seq.get())
        .bind(pin.then_some(batch.now()))
        .execute(&mut *connection)
        .await
        .during("pinning a message")?;
    let logged = TimelineChange::pin(change, message_seq, actor);
    Ok(Ok(Applied::Pinned { event_seq: Some(batch.append(group, &logged)?) }))
}
