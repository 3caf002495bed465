//! What a member who may not see a message receives of it: a group that hides history from
//! new members shows them older messages' places in the log (so a stream has no hole) but
//! not their content. Shared by the messages service (`GetUpdates`) and the fanout service
//! (live delivery), so both hide the same fields.

use crate::common::v1::update::Change;
use crate::common::v1::{Message, Update};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::v1::{MessageEdited, MessagePosted};

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
