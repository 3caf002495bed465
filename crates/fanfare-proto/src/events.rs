//! What an update-log entry says about membership, read alike by the messages service
//! (which publishes a join on the joining user's channel as well as the group's) and live
//! delivery (which takes an update on a user channel as that user's join only when it is
//! one).

use crate::common::v1::update::Change;
use crate::common::v1::{Update, group_event};

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
}
