//! What a member who may not see all of a log entry receives of it, in its place (so a
//! stream has no hole):
//!
//! - a group that hides history from new members shows them older messages without their
//!   content;
//! - a BROADCAST group hides its audience from plain members: a membership event about
//!   someone else reaches them without that user (or whoever acted).
//!
//! Shared by the messages service (`GetUpdates`) and the fanout service (live delivery), so
//! both hide the same fields.

use crate::common::v1::update::Change;
use crate::common::v1::{GroupEvent, Message, Update, group_event};

/// The message `update` carries in full (posted or edited), if it carries one.
pub fn carried_message(update: &Update) -> Option<&Message> {
    match &update.change {
        Some(Change::MessagePosted(posted)) => posted.message.as_ref(),
        Some(Change::MessageEdited(edited)) => edited.message.as_ref(),
        _ => None,
    }
}

/// Mutable access to the message `update` carries in full, if it carries one.
pub fn carried_message_mut(update: &mut Update) -> Option<&mut Message> {
    match &mut update.change {
        Some(Change::MessagePosted(posted)) => posted.message.as_mut(),
        Some(Change::MessageEdited(edited)) => edited.message.as_mut(),
        _ => None,
    }
}

/// Clears what a reader who may not see `message` must not read; its identity, place and
/// times stay.
pub fn clear_content(message: &mut Message) {
    message.text.clear();
    message.attachments.clear();
    message.mentioned_user_ids.clear();
    message.mentions_all = false;
    message.reply_to_message_seq = 0;
    message.reactions.clear();
}

/// The user a membership event is about (joined, left, removed, banned, unbanned, muted,
/// unmuted, given a role), if `update` is one. Ownership transfers are not: the owner is
/// public (`GetGroup` names them), and so is whom the group belonged to before.
pub fn membership_subject(update: &Update) -> Option<i64> {
    use group_event::Change as Event;
    let Some(Change::GroupEvent(event)) = &update.change else { return None };
    match event.change.as_ref()? {
        Event::MemberJoined(joined) => Some(joined.user_id),
        Event::MemberLeft(left) => Some(left.user_id),
        Event::MemberRemoved(removed) => Some(removed.user_id),
        Event::MemberBanned(banned) => Some(banned.user_id),
        Event::MemberUnbanned(unbanned) => Some(unbanned.user_id),
        Event::MemberMuted(muted) => Some(muted.user_id),
        Event::MemberUnmuted(unmuted) => Some(unmuted.user_id),
        Event::MemberRoleChanged(changed) => Some(changed.user_id),
        Event::GroupCreated(_)
        | Event::OwnershipTransferred(_)
        | Event::GroupSettingsChanged(_)
        | Event::GroupArchived(_) => None,
    }
}

/// Clears every user id of the membership event `update` carries: its subject and whoever
/// acted. What happened (a join, a ban and its end, a role) and its place in the log stay.
pub fn clear_members(update: &mut Update) {
    use group_event::Change as Event;
    let Some(Change::GroupEvent(event)) = &mut update.change else { return };
    let GroupEvent { actor_user_id, change, .. } = event;
    let subject = match change {
        Some(Event::MemberJoined(joined)) => &mut joined.user_id,
        Some(Event::MemberLeft(left)) => &mut left.user_id,
        Some(Event::MemberRemoved(removed)) => &mut removed.user_id,
        Some(Event::MemberBanned(banned)) => &mut banned.user_id,
        Some(Event::MemberUnbanned(unbanned)) => &mut unbanned.user_id,
        Some(Event::MemberMuted(muted)) => &mut muted.user_id,
        Some(Event::MemberUnmuted(unmuted)) => &mut unmuted.user_id,
        Some(Event::MemberRoleChanged(changed)) => &mut changed.user_id,
        Some(
            Event::GroupCreated(_)
            | Event::OwnershipTransferred(_)
            | Event::GroupSettingsChanged(_)
            | Event::GroupArchived(_),
        )
        | None => return,
    };
    *subject = 0;
    *actor_user_id = 0;
}

/// Whether `update`, read by `viewer`, is a membership event about someone else: what a
/// viewer from whom the group hides its audience receives without its users.
pub fn is_about_another_member(update: &Update, viewer: i64) -> bool {
    membership_subject(update).is_some_and(|subject| subject != viewer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::v1::{MemberBanned, MemberJoined, MessageEdited, MessagePosted, OwnershipTransferred};

    fn group_event(actor: i64, change: group_event::Change) -> Update {
        Update {
            event_seq: 4,
            change: Some(Change::GroupEvent(GroupEvent {
                group_id: 9,
                actor_user_id: actor,
                change: Some(change),
                ..Default::default()
            })),
            ..Default::default()
        }
    }

    #[test]
    fn membership_events_name_their_subject_and_others_none() {
        let joined =
            group_event(5, group_event::Change::MemberJoined(MemberJoined { user_id: 5, ..Default::default() }));
        assert_eq!(membership_subject(&joined), Some(5));
        assert!(is_about_another_member(&joined, 6));
        assert!(!is_about_another_member(&joined, 5), "one's own join stays whole");
        let transferred = group_event(
            1,
            group_event::Change::OwnershipTransferred(OwnershipTransferred {
                previous_owner_user_id: 1,
                new_owner_user_id: 2,
            }),
        );
        assert_eq!(membership_subject(&transferred), None);
        assert_eq!(membership_subject(&Update::default()), None);
    }

    #[test]
    fn clearing_members_keeps_the_event_and_its_place() {
        let banned = MemberBanned { user_id: 7, was_member: true, ..Default::default() };
        let mut update = group_event(1, group_event::Change::MemberBanned(banned));
        clear_members(&mut update);
        let cleared = MemberBanned { user_id: 0, ..banned };
        assert_eq!(update, group_event(0, group_event::Change::MemberBanned(cleared)));
        assert_eq!(update.event_seq, 4);
    }

    fn message() -> Message {
        Message {
            message_seq: 7,
            text: "secret".into(),
            mentioned_user_ids: vec![3],
            mentions_all: true,
            reply_to_message_seq: 2,
            ..Default::default()
        }
    }

    #[test]
    fn posted_and_edited_updates_carry_their_message_and_others_none() {
        let posted = Update {
            change: Some(Change::MessagePosted(MessagePosted { message: Some(message()) })),
            ..Default::default()
        };
        let edited = Update {
            change: Some(Change::MessageEdited(MessageEdited { message: Some(message()) })),
            ..Default::default()
        };
        assert_eq!(carried_message(&posted).map(|m| m.message_seq), Some(7));
        assert_eq!(carried_message(&edited).map(|m| m.message_seq), Some(7));
        assert!(carried_message(&Update::default()).is_none());
    }

    #[test]
    fn clearing_keeps_the_place_and_drops_the_content() {
        let mut cleared = message();
        clear_content(&mut cleared);
        assert_eq!(cleared, Message { message_seq: 7, ..Default::default() });
    }
}
