//! What an update-log entry says about membership, read alike by the messages service
//! (which publishes a join on the joining user's channel as well as the group's) and live
//! delivery (which takes an update on a user channel as that user's join only when it is
//! one).

use crate::common::v1::update::Change;
use crate::common::v1::{Update, group_event};

/// The field numbers of `Update`'s `change` oneof, and of its `group_event` member.
const CHANGE_FIELDS: std::ops::RangeInclusive<u32> = 10..=17;
const GROUP_EVENT_FIELD: u32 = 17;

/// Whether an encoded update's change is a group event, read from its top-level field keys
/// alone: the change of any other update (a message's, almost every one) is skipped over,
/// not decoded. Refuses what is not an encoded update.
pub fn is_encoded_group_event(mut encoded: &[u8]) -> Result<bool, prost::DecodeError> {
    use prost::encoding::{DecodeContext, decode_key, skip_field};
    let mut group_event = false;
    while !encoded.is_empty() {
        let (tag, wire_type) = decode_key(&mut encoded)?;
        // A oneof's last member on the wire is the one that counts.
        if CHANGE_FIELDS.contains(&tag) {
            group_event = tag == GROUP_EVENT_FIELD;
        }
        skip_field(wire_type, tag, &mut encoded, DecodeContext::default())?;
    }
    Ok(group_event)
}

/// The user `update` makes a member of its group, if it is a `MemberJoined` group event.
pub fn joined_user(update: &Update) -> Option<i64> {
    let Some(Change::GroupEvent(event)) = &update.change else { return None };
    match event.change.as_ref()? {
        group_event::Change::MemberJoined(joined) => Some(joined.user_id),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::v1::{GroupEvent, MemberJoined, MemberLeft, MessagePosted};

    fn group_event(change: group_event::Change) -> Update {
        Update {
            change: Some(Change::GroupEvent(GroupEvent { change: Some(change), ..Default::default() })),
            ..Default::default()
        }
    }

    #[test]
    fn only_a_join_names_a_joined_user() {
        let joined = group_event(group_event::Change::MemberJoined(MemberJoined { user_id: 7, ..Default::default() }));
        assert_eq!(joined_user(&joined), Some(7));
        let left = group_event(group_event::Change::MemberLeft(MemberLeft { user_id: 7 }));
        assert_eq!(joined_user(&left), None);
        let posted = Update { change: Some(Change::MessagePosted(MessagePosted::default())), ..Default::default() };
        assert_eq!(joined_user(&posted), None);
        assert_eq!(joined_user(&Update::default()), None);
    }

    #[test]
    fn a_group_event_is_told_from_its_encoding_alone() {
        use prost::Message as _;
        let joined = group_event(group_event::Change::MemberJoined(MemberJoined { user_id: 7, ..Default::default() }));
        let posted = Update {
            group_id: 3,
            event_seq: 9,
            entry_token: u64::MAX,
            change: Some(Change::MessagePosted(MessagePosted::default())),
            ..Default::default()
        };
        assert_eq!(is_encoded_group_event(&joined.encode_to_vec()), Ok(true));
        assert_eq!(is_encoded_group_event(&posted.encode_to_vec()), Ok(false));
        assert_eq!(is_encoded_group_event(&Update::default().encode_to_vec()), Ok(false));
        // A later member of the oneof replaces an earlier one, as decoding does.
        let replaced = [joined.encode_to_vec(), posted.encode_to_vec()].concat();
        assert_eq!(Update::decode(replaced.as_slice()).map(|update| joined_user(&update)), Ok(None));
        assert_eq!(is_encoded_group_event(&replaced), Ok(false));
        assert!(is_encoded_group_event(&[0xff, 0xff]).is_err(), "not an update");
        let truncated = joined.encode_to_vec();
        assert!(is_encoded_group_event(&truncated[..truncated.len() - 1]).is_err());
    }
}
