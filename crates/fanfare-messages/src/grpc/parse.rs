//! Wire requests to validated values; every bad field is named, all at once.

use chrono::{DateTime, Utc};
use fanfare_core::ids::{GroupId, UserId};
use fanfare_core::paging::{Cursor, PageSize};
use fanfare_core::time::parse_timestamp;
use fanfare_core::validation::{FieldViolation, InvalidRequest, Violations};
use fanfare_proto::messages::v1 as pb;
use uuid::Uuid;

use crate::config::MessageLimits;
use crate::domain::{
    Attachment, ClientMessageId, Content, Emoji, MAX_ATTACHMENTS, MAX_MENTIONS, MessageText, parse_seq,
};
use crate::service::{SendMessage, SystemEvent};
use crate::store::Direction;

/// Default and largest page of ListMessages.
pub const HISTORY_PAGE: (u32, u32) = (50, 100);
/// Default and largest page of GetUpdates.
pub const UPDATES_PAGE: (u32, u32) = (100, 1_000);
/// Most ids and seqs in one GetMessages.
pub const MAX_GET_MESSAGES: usize = 100;
/// Most groups in one GetUnreadCounts.
pub const MAX_UNREAD_GROUPS: usize = 1_000;
/// Most events in one AppendSystemUpdates.
pub const MAX_SYSTEM_EVENTS: usize = 500;

/// `group_id` and a positive `message_seq`.
pub fn group_and_seq(group_raw: i64, seq_raw: i64) -> Result<(GroupId, i64), InvalidRequest> {
    let mut violations = Violations::new();
    let group = violations.check(GroupId::parse("group_id", group_raw));
    let seq = violations.check(parse_seq("message_seq", seq_raw));
    violations.finish_with((|| Some((group?, seq?)))())
}

/// SendMessage.
pub fn send_message(request: &pb::SendMessageRequest, limits: &MessageLimits) -> Result<SendMessage, InvalidRequest> {
    let mut violations = Violations::new();
    let group = violations.check(GroupId::parse("group_id", request.group_id));
    let key = violations.check(ClientMessageId::parse("client_message_id", &request.client_message_id));
    let text = violations.check(MessageText::parse("text", &request.text, limits.max_text_chars));
    if request.attachments.len() > MAX_ATTACHMENTS {
        violations.push(FieldViolation::new(
            "attachments",
            format!("must hold at most {MAX_ATTACHMENTS} attachments (got {})", request.attachments.len()),
        ));
    }
    let mut attachments = Vec::with_capacity(request.attachments.len());
    for (index, raw) in request.attachments.iter().enumerate() {
        match Attachment::parse(&format!("attachments[{index}]"), raw) {
            Ok(attachment) => attachments.push(attachment),
            Err(bad) => bad.into_iter().for_each(|violation| violations.push(violation)),
        }
    }
    if request.text.is_empty() && request.attachments.is_empty() {
        violations.push(FieldViolation::new("text", "a message needs text or at least one attachment"));
    }
    let reply_to = match request.reply_to_message_seq {
        0 => Some(None),
        raw => violations.check(parse_seq("reply_to_message_seq", raw)).map(Some),
    };
    if request.mentioned_user_ids.len() > MAX_MENTIONS {
        violations.push(FieldViolation::new(
            "mentioned_user_ids",
            format!("must list at most {MAX_MENTIONS} users (got {})", request.mentioned_user_ids.len()),
        ));
    }
    let mut mentions: Vec<UserId> = Vec::with_capacity(request.mentioned_user_ids.len());
    for (index, raw) in request.mentioned_user_ids.iter().enumerate() {
        let parsed = violations.check(UserId::parse(&format!("mentioned_user_ids[{index}]"), *raw));
        if let Some(user) = parsed.filter(|user| !mentions.contains(user)) {
            mentions.push(user);
        }
    }
    let content = (|| {
        Some(Content {
            text: text?,
            attachments,
            reply_to_message_seq: reply_to?,
            mentions,
            mentions_all: request.mentions_all,
        })
    })();
    let parsed = (|| Some(SendMessage { group: group?, client_message_id: key?, content: content? }))();
    violations.finish_with(parsed)
}

/// EditMessage: the new text must not be empty.
pub fn edit_message(
    request: &pb::EditMessageRequest,
    limits: &MessageLimits,
) -> Result<(GroupId, i64, MessageText), InvalidRequest> {
    let mut violations = Violations::new();
    let group = violations.check(GroupId::parse("group_id", request.group_id));
    let seq = violations.check(parse_seq("message_seq", request.message_seq));
    let text = if request.text.is_empty() {
        violations.push(FieldViolation::new("text", "must not be empty; delete the message instead"));
        None
    } else {
        violations.check(MessageText::parse("text", &request.text, limits.max_text_chars))
    };
    violations.finish_with((|| Some((group?, seq?, text?)))())
}

/// PurgeUserMessages.
pub fn purge(
    request: &pb::PurgeUserMessagesRequest,
) -> Result<(GroupId, UserId, Option<DateTime<Utc>>), InvalidRequest> {
    let mut violations = Violations::new();
    let group = violations.check(GroupId::parse("group_id", request.group_id));
    let user = violations.check(UserId::parse("user_id", request.user_id));
    let since = match &request.since {
        Some(timestamp) => violations.check(parse_timestamp("since", timestamp)).map(Some),
        None => Some(None),
    };
    violations.finish_with((|| Some((group?, user?, since?)))())
}

/// AddReaction / RemoveReaction.
pub fn reaction(group_raw: i64, seq_raw: i64, emoji_raw: &str) -> Result<(GroupId, i64, Emoji), InvalidRequest> {
    let mut violations = Violations::new();
    let group = violations.check(GroupId::parse("group_id", group_raw));
    let seq = violations.check(parse_seq("message_seq", seq_raw));
    let emoji = violations.check(Emoji::parse("emoji", emoji_raw));
    violations.finish_with((|| Some((group?, seq?, emoji?)))())
}

/// ListMessages: a page token continues from the last message_seq returned.
pub fn list_messages(
    request: &pb::ListMessagesRequest,
) -> Result<(GroupId, Direction, Option<i64>, PageSize), InvalidRequest> {
    let mut violations = Violations::new();
    let group = violations.check(GroupId::parse("group_id", request.group_id));
    let direction = match pb::Direction::try_from(request.direction) {
        Ok(pb::Direction::Forward) => Some(Direction::Forward),
        Ok(pb::Direction::Backward) => Some(Direction::Backward),
        _ => {
            violations.push(FieldViolation::new(
                "direction",
                format!("must be DIRECTION_BACKWARD or DIRECTION_FORWARD (got {})", request.direction),
            ));
            None
        }
    };
    let size = violations.check(PageSize::parse("page_size", request.page_size, HISTORY_PAGE.0, HISTORY_PAGE.1));
    let anchor = match request.anchor_message_seq {
        0 => Some(None),
        raw => violations.check(parse_seq("anchor_message_seq", raw)).map(Some),
    };
    let cursor = violations.check(Cursor::decode("page_token", &request.page_token, 1));
    let from_token = match cursor.flatten() {
        Some(cursor) => violations.check(parse_seq("page_token", cursor.0[0])).map(Some),
        None => Some(None),
    };
    // A token continues where the previous page ended; the anchor only places the first page.
    let start = (|| Some(from_token?.or(anchor?)))();
    violations.finish_with((|| Some((group?, direction?, start?, size?)))())
}

/// GetMessages.
pub fn get_messages(request: &pb::GetMessagesRequest) -> Result<(GroupId, Vec<Uuid>, Vec<i64>), InvalidRequest> {
    let mut violations = Violations::new();
    let group = violations.check(GroupId::parse("group_id", request.group_id));
    let total = request.message_ids.len() + request.message_seqs.len();
    if total == 0 {
        violations.push(FieldViolation::new("message_ids", "name at least one message by id or by message_seq"));
    }
    if total > MAX_GET_MESSAGES {
        violations.push(FieldViolation::new(
            "message_ids",
            format!("ids and seqs together must be at most {MAX_GET_MESSAGES} (got {total})"),
        ));
    }
    let mut ids = Vec::with_capacity(request.message_ids.len());
    for (index, raw) in request.message_ids.iter().enumerate() {
        match Uuid::parse_str(raw) {
            Ok(id) if !ids.contains(&id) => ids.push(id),
            Ok(_) => {}
            Err(_) => {
                violations.push(FieldViolation::new(format!("message_ids[{index}]"), "must be a message id (a UUID)"))
            }
        }
    }
    let mut seqs = Vec::with_capacity(request.message_seqs.len());
    for (index, raw) in request.message_seqs.iter().enumerate() {
        let parsed = violations.check(parse_seq(&format!("message_seqs[{index}]"), *raw));
        if let Some(seq) = parsed.filter(|seq| !seqs.contains(seq)) {
            seqs.push(seq);
        }
    }
    violations.finish_with(group.map(|group| (group, ids, seqs)))
}

/// GetUpdates: `after_event_seq` may be 0 (from the start).
pub fn get_updates(request: &pb::GetUpdatesRequest) -> Result<(GroupId, i64, PageSize), InvalidRequest> {
    let mut violations = Violations::new();
    let group = violations.check(GroupId::parse("group_id", request.group_id));
    let after = if request.after_event_seq >= 0 {
        Some(request.after_event_seq)
    } else {
        violations.push(FieldViolation::new(
            "after_event_seq",
            format!("must be 0 or a positive event_seq (got {})", request.after_event_seq),
        ));
        None
    };
    let size = violations.check(PageSize::parse("page_size", request.page_size, UPDATES_PAGE.0, UPDATES_PAGE.1));
    violations.finish_with((|| Some((group?, after?, size?)))())
}

/// GetUnreadCounts.
pub fn unread_groups(request: &pb::GetUnreadCountsRequest) -> Result<Vec<GroupId>, InvalidRequest> {
    let mut violations = Violations::new();
    if request.group_ids.len() > MAX_UNREAD_GROUPS {
        violations.push(FieldViolation::new(
            "group_ids",
            format!("must list at most {MAX_UNREAD_GROUPS} groups (got {})", request.group_ids.len()),
        ));
    }
    let mut groups: Vec<GroupId> = Vec::with_capacity(request.group_ids.len());
    for (index, raw) in request.group_ids.iter().enumerate() {
        let parsed = violations.check(GroupId::parse(&format!("group_ids[{index}]"), *raw));
        if let Some(group) = parsed.filter(|group| !groups.contains(group)) {
            groups.push(group);
        }
    }
    violations.finish_with(Some(groups))
}

/// AppendSystemUpdates.
pub fn system_events(request: &pb::AppendSystemUpdatesRequest) -> Result<Vec<SystemEvent>, InvalidRequest> {
    let mut violations = Violations::new();
    if request.events.is_empty() {
        violations.push(FieldViolation::new("events", "must hold at least one event"));
    }
    if request.events.len() > MAX_SYSTEM_EVENTS {
        violations.push(FieldViolation::new(
            "events",
            format!("must hold at most {MAX_SYSTEM_EVENTS} events (got {})", request.events.len()),
        ));
    }
    let mut events = Vec::with_capacity(request.events.len());
    for (index, raw) in request.events.iter().enumerate() {
        let field = format!("events[{index}]");
        if raw.outbox_id <= 0 {
            violations.push(FieldViolation::new(format!("{field}.outbox_id"), "must be a positive outbox row id"));
            continue;
        }
        let Some(event) = &raw.event else {
            violations.push(FieldViolation::new(format!("{field}.event"), "is required"));
            continue;
        };
        if violations.check(GroupId::parse(&format!("{field}.event.group_id"), event.group_id)).is_none() {
            continue;
        }
        if event.change.is_none() {
            violations.push(FieldViolation::new(format!("{field}.event.change"), "is required"));
            continue;
        }
        events.push(SystemEvent { outbox_id: raw.outbox_id, event: event.clone() });
    }
    violations.finish_with(Some(events))
}
