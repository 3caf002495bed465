//! What of the update log one member may read (docs/messages.md, "Who may do what"): entries
//! they may not read whole keep their place, so the log they see has no hole, and lose only
//! what is hidden from them (`fanfare_proto::redact`, which live delivery shares).

use chrono::{DateTime, Utc};
use fanfare_core::ids::UserId;
use fanfare_core::time::parse_timestamp;
use fanfare_proto::common::v1 as common;
use fanfare_proto::redact::{carried_message_mut, clear_content, clear_members, is_about_another_member};
use prost::Message as _;

use super::StoredUpdate;

/// What one reader of a group's log may not see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogView {
    /// The reader.
    pub reader: UserId,
    /// Messages created before this reach the reader without content (the group hides
    /// history from new members and the reader does not moderate it).
    pub messages_before: Option<DateTime<Utc>>,
    /// Membership events about other users reach the reader without them (a plain member of
    /// a BROADCAST group, whose audience is private).
    pub hides_audience: bool,
}

impl LogView {
    /// Whether the reader sees every entry whole (most readers): nothing to decode.
    pub fn sees_all(&self) -> bool {
        self.messages_before.is_none() && !self.hides_audience
    }

    /// `update` as the reader may see it: whole, or in its place without what is hidden.
    pub fn redact(&self, update: StoredUpdate) -> StoredUpdate {
        if self.sees_all() {
            return update;
        }
        let Ok(mut decoded) = common::Update::decode(update.payload.as_ref()) else {
            // Undecodable entries are reported by the adapter, which decodes every entry.
            return update;
        };
        if !self.hide(&mut decoded) {
            return update;
        }
        StoredUpdate { payload: decoded.encode_to_vec().into(), ..update }
    }

    /// Clears what the reader may not see of `update`; whether anything was.
    fn hide(&self, update: &mut common::Update) -> bool {
        if self.hides_audience && is_about_another_member(update, self.reader.get()) {
            clear_members(update);
            return true;
        }
        let Some(since) = self.messages_before else { return false };
        let Some(message) = carried_message_mut(update) else { return false };
        let created_at = message.created_at.as_ref().and_then(|time| parse_timestamp("created_at", time).ok());
        if created_at.is_none_or(|created_at| created_at >= since) {
            return false;
        }
        clear_content(message);
        true
    }
}

#[cfg(test)]
mod tests {
    use fanfare_core::ids::{EventSeq, GroupId};
    use fanfare_proto::common::v1::update::Change;
    use fanfare_proto::common::v1::{GroupEvent, MemberJoined, group_event};

    use super::*;

    fn joined(user: i64) -> StoredUpdate {
        let update = common::Update {
            group_id: 1,
            event_seq: 3,
            change: Some(Change::GroupEvent(GroupEvent {
                group_id: 1,
                actor_user_id: user,
                change: Some(group_event::Change::MemberJoined(MemberJoined { user_id: user, ..Default::default() })),
                ..Default::default()
            })),
            ..Default::default()
        };
        StoredUpdate {
            group_id: GroupId::from_trusted(1),
            event_seq: EventSeq::from_trusted(3),
            payload: update.encode_to_vec().into(),
        }
    }

    fn joined_user(update: &StoredUpdate) -> i64 {
        match common::Update::decode(update.payload.as_ref()).unwrap().change {
            Some(Change::GroupEvent(GroupEvent {
                change: Some(group_event::Change::MemberJoined(joined)), ..
            })) => joined.user_id,
            other => panic!("not a join: {other:?}"),
        }
    }

    fn view(reader: i64, hides_audience: bool) -> LogView {
        LogView { reader: UserId::from_trusted(reader), messages_before: None, hides_audience }
    }

    #[test]
    fn a_hidden_audience_drops_other_members_but_not_the_reader() {
        let plain = view(2, true);
        assert_eq!(joined_user(&plain.redact(joined(7))), 0, "someone else's join loses its user");
        assert_eq!(plain.redact(joined(7)).event_seq.get(), 3, "and keeps its place");
        assert_eq!(plain.redact(joined(2)), joined(2), "one's own join stays whole");
        assert_eq!(view(2, false).redact(joined(7)), joined(7), "a visible audience stays whole");
        assert!(view(2, false).sees_all());
    }
}
