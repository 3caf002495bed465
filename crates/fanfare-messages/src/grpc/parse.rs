//! Wire requests to validated values; every bad field is named, all at once.

use chrono::{DateTime, Utc};
use fanfare_core::ids::{EventSeq, GroupId, MessageSeq, UserId};
use fanfare_core::paging::{Cursor, PageSize};
use fanfare_core::time::parse_timestamp;
use fanfare_core::validation::{FieldViolation, InvalidRequest, Violations, check_list_length, distinct_list};
use fanfare_proto::messages::v1 as pb;
use uuid::Uuid;

use crate::config::MessageLimits;
use crate::domain::{
    Attachment, ClientMessageId, Content, Emoji, LogCursor, MAX_ATTACHMENTS, MAX_MENTIONS, MessageText,
};
use crate::service::{SendMessage, SystemEvent};
use crate::store::Direction;

/// Default and largest page of ListMessages.
pub(crate) const HISTORY_PAGE: (u32, u32) = (50, 100);
/// Default and largest page of GetUpdates.
pub(crate) const UPDATES_PAGE: (u32, u32) = (100, 1_000);
/// Most ids and seqs in one GetMessages.
pub(crate) const MAX_GET_MESSAGES: usize = 100;
/// Most groups in one GetUnreadCounts.
pub(crate) const MAX_UNREAD_GROUPS: usize = 1_000;
/// Most events in one AppendSystemUpdates.
pub(crate) const MAX_SYSTEM_EVENTS: usize = 500;

/// One message of a group, named by its seq: DeleteMessage, PinMessage, UnpinMessage and
/// MarkRead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MessageRef {
    pub(crate) group: GroupId,
    pub(crate) message_seq: MessageSeq,
}

/// A validated EditMessage request.
#[derive(Debug, Clone)]
pub(crate) struct EditMessage {
    pub(crate) group: GroupId,
    pub(crate) message_seq: MessageSeq,
    /// The new text, never empty.
    pub(crate) text: MessageText,
}

/// A validated PurgeUserMessages request.
#[derive(Debug, Clone)]
pub(crate) struct PurgeUserMessages {
    pub(crate) group: GroupId,
    /// Whose messages.
    pub(crate) user: UserId,
    /// Only messages sent at or after this time.
    pub(crate) since: Option<DateTime<Utc>>,
}

/// A validated AddReaction or RemoveReaction request.
#[derive(Debug, Clone)]
pub(crate) struct Reaction {
    pub(crate) group: GroupId,
    pub(crate) message_seq: MessageSeq,
    pub(crate) emoji: Emoji,
}

/// A validated ListMessages request.
#[derive(Debug, Clone)]
pub(crate) struct ListMessages {
    pub(crate) group: GroupId,
    pub(crate) direction: Direction,
    /// Where the page starts (exclusive): the page token's position, else the anchor.
    pub(crate) start: Option<MessageSeq>,
    pub(crate) size: PageSize,
}

/// A validated GetMessages request: ids and seqs without repeats.
#[derive(Debug, Clone)]
pub(crate) struct GetMessages {
    pub(crate) group: GroupId,
    pub(crate) ids: Vec<Uuid>,
    pub(crate) seqs: Vec<MessageSeq>,
}

/// A validated GetUpdates request.
#[derive(Debug, Clone)]
pub(crate) struct GetUpdates {
    pub(crate) group: GroupId,
    /// The caller's position in the log.
    pub(crate) after: LogCursor,
    pub(crate) size: PageSize,
}

/// `group_id` and a positive `message_seq`.
pub(crate) fn message_ref(group_raw: i64, seq_raw: i64) -> Result<MessageRef, InvalidRequest> {
    let mut violations = Violations::new();
    let group = violations.check(GroupId::parse("group_id", group_raw));
    let message_seq = violations.check(MessageSeq::parse("message_seq", seq_raw));
    violations.finish_with(|| Some(MessageRef { group: group?, message_seq: message_seq? }))
}

/// SendMessage.
pub(crate) fn send_message(
    request: &pb::SendMessageRequest,
    limits: &MessageLimits,
) -> Result<SendMessage, InvalidRequest> {
    let mut violations = Violations::new();
    let group = violations.check(GroupId::parse("group_id", request.group_id));
    let key = violations.check(ClientMessageId::parse("client_message_id", &request.client_message_id));
    let text = violations.check(MessageText::parse("text", &request.text, limits.max_text_chars));
    let attachments = violations
        .check(check_list_length("attachments", request.attachments.len(), 0, MAX_ATTACHMENTS, "attachments"))
        .and_then(|()| {
            let mut attachments = Vec::with_capacity(request.attachments.len());
            let mut all_parsed = true;
            for (index, raw) in request.attachments.iter().enumerate() {
                match Attachment::parse(&format!("attachments[{index}]"), raw) {
                    Ok(attachment) => attachments.push(attachment),
                    Err(bad) => {
                        all_parsed = false;
                        bad.into_iter().for_each(|violation| violations.push(violation));
                    }
                }
            }
            all_parsed.then_some(attachments)
        });
    if request.text.is_empty() && request.attachments.is_empty() {
        violations.push(FieldViolation::new("text", "a message needs text or at least one attachment"));
    }
    let reply_to = match request.reply_to_message_seq {
        0 => Some(None),
        raw => violations.check(MessageSeq::parse("reply_to_message_seq", raw)).map(Some),
    };
    let mentions = distinct_list(
        "mentioned_user_ids",
        &request.mentioned_user_ids,
        (0, MAX_MENTIONS),
        "users",
        |field, raw| UserId::parse(field, *raw),
        &mut violations,
    );
    violations.finish_with(|| {
        let content = Content {
            text: text?,
            attachments: attachments?,
            reply_to_message_seq: reply_to?,
            mentions: mentions?,
            mentions_all: request.mentions_all,
        };
        Some(SendMessage { group: group?, client_message_id: key?, content })
    })
}

/// EditMessage: the new text must not be empty.
pub(crate) fn edit_message(
    request: &pb::EditMessageRequest,
    limits: &MessageLimits,
) -> Result<EditMessage, InvalidRequest> {
    let mut violations = Violations::new();
    let group = violations.check(GroupId::parse("group_id", request.group_id));
    let message_seq = violations.check(MessageSeq::parse("message_seq", request.message_seq));
    let text = if request.text.is_empty() {
        violations.push(FieldViolation::new("text", "must not be empty; delete the message instead"));
        None
    } else {
        violations.check(MessageText::parse("text", &request.text, limits.max_text_chars))
    };
    violations.finish_with(|| Some(EditMessage { group: group?, message_seq: message_seq?, text: text? }))
}

/// PurgeUserMessages.
pub(crate) fn purge(request: &pb::PurgeUserMessagesRequest) -> Result<PurgeUserMessages, InvalidRequest> {
    let mut violations = Violations::new();
    let group = violations.check(GroupId::parse("group_id", request.group_id));
    let user = violations.check(UserId::parse("user_id", request.user_id));
    let since = match &request.since {
        Some(timestamp) => violations.check(parse_timestamp("since", timestamp)).map(Some),
        None => Some(None),
    };
    violations.finish_with(|| Some(PurgeUserMessages { group: group?, user: user?, since: since? }))
}

/// AddReaction / RemoveReaction.
pub(crate) fn reaction(group_raw: i64, seq_raw: i64, emoji_raw: &str) -> Result<Reaction, InvalidRequest> {
    let mut violations = Violations::new();
    let group = violations.check(GroupId::parse("group_id", group_raw));
    let message_seq = violations.check(MessageSeq::parse("message_seq", seq_raw));
    let emoji = violations.check(Emoji::parse("emoji", emoji_raw));
    violations.finish_with(|| Some(Reaction { group: group?, message_seq: message_seq?, emoji: emoji? }))
}

/// ListMessages: a page token continues from the last message_seq returned.
pub(crate) fn list_messages(request: &pb::ListMessagesRequest) -> Result<ListMessages, InvalidRequest> {
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
        raw => violations.check(MessageSeq::parse("anchor_message_seq", raw)).map(Some),
    };
    let cursor = violations.check(Cursor::decode("page_token", &request.page_token, 1));
    let from_token = match cursor.flatten() {
        Some(cursor) => violations.check(MessageSeq::parse("page_token", cursor.0[0])).map(Some),
        None => Some(None),
    };
    violations.finish_with(|| {
        // A token continues where the previous page ended; the anchor only places the first page.
        let start = from_token?.or(anchor?);
        Some(ListMessages { group: group?, direction: direction?, start, size: size? })
    })
}

/// GetMessages: ids and seqs together are refused on their count before any is parsed.
pub(crate) fn get_messages(request: &pb::GetMessagesRequest) -> Result<GetMessages, InvalidRequest> {
    let mut violations = Violations::new();
    let group = violations.check(GroupId::parse("group_id", request.group_id));
    let total = request.message_ids.len() + request.message_seqs.len();
    let wanted = if total == 0 {
        violations.push(FieldViolation::new("message_ids", "name at least one message by id or by message_seq"));
        None
    } else if total > MAX_GET_MESSAGES {
        violations.push(FieldViolation::new(
            "message_ids",
            format!("ids and seqs together must be at most {MAX_GET_MESSAGES} (got {total})"),
        ));
        None
    } else {
        // Each list is within the total just checked.
        let bounds = (0, MAX_GET_MESSAGES);
        let ids = distinct_list(
            "message_ids",
            &request.message_ids,
            bounds,
            "ids",
            |field, raw| parse_uuid(field, raw),
            &mut violations,
        );
        let seqs = distinct_list(
            "message_seqs",
            &request.message_seqs,
            bounds,
            "seqs",
            |field, raw| MessageSeq::parse(field, *raw),
            &mut violations,
        );
        ids.zip(seqs)
    };
    violations.finish_with(|| {
        let (ids, seqs) = wanted?;
        Some(GetMessages { group: group?, ids, seqs })
    })
}

fn parse_uuid(field: &str, raw: &str) -> Result<Uuid, FieldViolation> {
    Uuid::parse_str(raw).map_err(|_| FieldViolation::new(field, "must be a message id (a UUID)"))
}

/// GetUpdates: `after_event_seq` may be 0 (from the start).
pub(crate) fn get_updates(request: &pb::GetUpdatesRequest) -> Result<GetUpdates, InvalidRequest> {
    let mut violations = Violations::new();
    let group = violations.check(GroupId::parse("group_id", request.group_id));
    let after = match EventSeq::parse_position("after_event_seq", request.after_event_seq) {
        Ok(event_seq) => Some(LogCursor { event_seq, entry_token: request.after_entry_token }),
        Err(_) => {
            // This field's own wording (the shared one says only "must not be negative").
            violations.push(FieldViolation::new(
                "after_event_seq",
                format!("must be 0 or a positive event_seq (got {})", request.after_event_seq),
            ));
            None
        }
    };
    let size = violations.check(PageSize::parse("page_size", request.page_size, UPDATES_PAGE.0, UPDATES_PAGE.1));
    violations.finish_with(|| Some(GetUpdates { group: group?, after: after?, size: size? }))
}

/// GetUnreadCounts: up to [`MAX_UNREAD_GROUPS`] groups (none means all of the caller's).
pub(crate) fn unread_groups(request: &pb::GetUnreadCountsRequest) -> Result<Vec<GroupId>, InvalidRequest> {
    let mut violations = Violations::new();
    let groups = distinct_list(
        "group_ids",
        &request.group_ids,
        (0, MAX_UNREAD_GROUPS),
        "groups",
        |field, raw| GroupId::parse(field, *raw),
        &mut violations,
    );
    violations.finish_with(|| groups)
}

/// AppendSystemUpdates: the events are refused on their count before any is read.
pub(crate) fn system_events(request: &pb::AppendSystemUpdatesRequest) -> Result<Vec<SystemEvent>, InvalidRequest> {
    check_list_length("events", request.events.len(), 1, MAX_SYSTEM_EVENTS, "events")?;
    let mut violations = Violations::new();
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
    violations.finish_with(|| Some(events))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(error: &InvalidRequest) -> Vec<&str> {
        error.violations().iter().map(|violation| violation.field.as_str()).collect()
    }

    fn send(mentioned_user_ids: Vec<i64>) -> pb::SendMessageRequest {
        pb::SendMessageRequest {
            group_id: 1,
            client_message_id: "k".to_owned(),
            text: "hi".to_owned(),
            mentioned_user_ids,
            ..Default::default()
        }
    }

    #[test]
    fn mentions_drop_repeats_in_order_and_are_refused_on_their_length() {
        let limits = MessageLimits::default();
        let parsed = send_message(&send(vec![3, 1, 3, 2, 1]), &limits).expect("valid");
        let mentions: Vec<i64> = parsed.content.mentions.iter().map(|user| user.get()).collect();
        assert_eq!(mentions, [3, 1, 2]);

        let refused = send_message(&send(vec![0; 1_000_000]), &limits).unwrap_err();
        assert_eq!(fields(&refused), ["mentioned_user_ids"], "one violation, whatever the entries");
        let refused = send_message(&send(vec![0; MAX_MENTIONS]), &limits).unwrap_err();
        assert_eq!(refused.violations().len(), fanfare_core::validation::MAX_REPORTED_VIOLATIONS);
        assert_eq!(refused.omitted(), MAX_MENTIONS - fanfare_core::validation::MAX_REPORTED_VIOLATIONS);
    }

    #[test]
    fn get_messages_counts_ids_and_seqs_together_before_reading_either() {
        let request = |message_ids: Vec<String>, message_seqs: Vec<i64>| pb::GetMessagesRequest {
            group_id: 1,
            message_ids,
            message_seqs,
        };
        let over = request(vec![String::new(); 60], vec![0; 41]);
        assert_eq!(fields(&get_messages(&over).unwrap_err()), ["message_ids"]);
        let id = Uuid::now_v7();
        let parsed = get_messages(&request(vec![id.to_string(); 50], vec![2, 1, 2])).expect("valid");
        let seqs: Vec<i64> = parsed.seqs.iter().map(|seq| seq.get()).collect();
        assert_eq!((parsed.ids, seqs), (vec![id], vec![2, 1]));
        let bad = get_messages(&request(vec!["x".to_owned()], vec![0])).unwrap_err();
        assert_eq!(fields(&bad), ["message_ids[0]", "message_seqs[0]"]);
    }
}
