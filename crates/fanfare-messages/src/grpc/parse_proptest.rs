//! Property tests of the request parsers ([`super::parse`]): any request message, however
//! hostile (extreme ids and seqs, unknown enum numbers, strings of any characters and of up
//! to 4 MiB, lists of up to ten times their limit), is either parsed into values within the
//! documented bounds or refused with a bounded error; never a panic.

use fanfare_core::arbitrary::{assert_parsed, config, ids, int32, int64, page_token, short_text, text};
use fanfare_proto::common::v1 as common;
use fanfare_proto::messages::v1 as pb;
use fanfare_proto::prost_types::Timestamp;
use proptest::prelude::*;

use super::parse::{self, HISTORY_PAGE, MAX_GET_MESSAGES, MAX_SYSTEM_EVENTS, MAX_UNREAD_GROUPS, UPDATES_PAGE};
use crate::config::MessageLimits;
use crate::domain::{MAX_ATTACHMENTS, MAX_EMOJI_CHARS, MAX_MEDIA_ID_CHARS, MAX_MENTIONS};

fn attachment() -> impl Strategy<Value = common::Attachment> {
    (short_text(), short_text(), int64(), int32(), int32(), int64()).prop_map(
        |(media_id, mime_type, size_bytes, width, height, duration_ms)| common::Attachment {
            media_id,
            mime_type,
            size_bytes,
            width,
            height,
            duration_ms,
        },
    )
}

fn system_event() -> impl Strategy<Value = pb::SystemEvent> {
    let change = proptest::option::of(
        int64().prop_map(|user_id| common::group_event::Change::MemberLeft(common::MemberLeft { user_id })),
    );
    let event = proptest::option::of((int64(), int64(), change).prop_map(|(group_id, actor_user_id, change)| {
        common::GroupEvent { group_id, actor_user_id, occurred_at: None, change }
    }));
    (int64(), event).prop_map(|(outbox_id, event)| pb::SystemEvent { outbox_id, event })
}

fn distinct<T: std::hash::Hash + Eq>(values: impl IntoIterator<Item = T>) -> bool {
    let mut seen = std::collections::HashSet::new();
    values.into_iter().all(|value| seen.insert(value))
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn send_message(
        group_id in int64(), client_message_id in text(), message_text in text(),
        attachments in prop::collection::vec(attachment(), 0..=MAX_ATTACHMENTS * 10 + 1),
        reply_to_message_seq in int64(), mentioned_user_ids in ids(MAX_MENTIONS), mentions_all in any::<bool>(),
    ) {
        let limits = MessageLimits::default();
        let request = pb::SendMessageRequest {
            group_id,
            client_message_id,
            text: message_text,
            attachments,
            reply_to_message_seq,
            mentioned_user_ids,
            mentions_all,
        };
        assert_parsed(&parse::send_message(&request, &limits), |send| {
            let content = &send.content;
            assert!(send.group.get() > 0);
            assert!(content.text.as_str().chars().count() <= limits.max_text_chars);
            assert!(!content.text.as_str().is_empty() || !content.attachments.is_empty());
            assert!(content.attachments.len() <= MAX_ATTACHMENTS);
            assert!(content.attachments.iter().all(|a| a.media_id.chars().count() <= MAX_MEDIA_ID_CHARS));
            assert!(content.mentions.len() <= MAX_MENTIONS && distinct(content.mentions.iter().map(|u| u.get())));
            assert!(content.reply_to_message_seq.is_none_or(|seq| seq.get() > 0));
        });
    }

    #[test]
    fn message_changes(group_id in int64(), message_seq in int64(), new_text in text(), emoji in text(),
        user_id in int64(), since in proptest::option::of((int64(), int32())),
    ) {
        let limits = MessageLimits::default();
        let edit = pb::EditMessageRequest { group_id, message_seq, text: new_text };
        assert_parsed(&parse::edit_message(&edit, &limits), |edit| {
            assert!(edit.group.get() > 0 && edit.message_seq.get() > 0 && !edit.text.as_str().is_empty());
        });
        assert_parsed(&parse::message_ref(group_id, message_seq), |target| assert!(target.message_seq.get() > 0));
        assert_parsed(&parse::reaction(group_id, message_seq, &emoji), |reaction| {
            assert!(reaction.message_seq.get() > 0 && reaction.emoji.as_str().chars().count() <= MAX_EMOJI_CHARS);
        });
        let since = since.map(|(seconds, nanos)| Timestamp { seconds, nanos });
        let purge = pb::PurgeUserMessagesRequest { group_id, user_id, since };
        assert_parsed(&parse::purge(&purge), |purge| assert!(purge.group.get() > 0 && purge.user.get() > 0));
    }

    #[test]
    fn reads(
        group_id in int64(), direction in int32(), anchor in int64(), page_size in int32(),
        page_token in page_token(), after_event_seq in int64(),
        message_ids in prop::collection::vec(short_text(), 0..=MAX_GET_MESSAGES * 2),
        message_seqs in ids(MAX_GET_MESSAGES), group_ids in ids(MAX_UNREAD_GROUPS / 10),
    ) {
        let list = pb::ListMessagesRequest { group_id, direction, anchor_message_seq: anchor, page_size, page_token };
        assert_parsed(&parse::list_messages(&list), |list| {
            assert!(list.start.is_none_or(|seq| seq.get() > 0));
            assert!((1..=HISTORY_PAGE.1).contains(&list.size.get()));
        });
        let get = pb::GetMessagesRequest { group_id, message_ids, message_seqs };
        assert_parsed(&parse::get_messages(&get), |get| {
            assert!((1..=MAX_GET_MESSAGES).contains(&(get.ids.len() + get.seqs.len())));
            assert!(distinct(get.ids.iter()) && distinct(get.seqs.iter()) && get.seqs.iter().all(|seq| seq.get() > 0));
        });
        let updates = pb::GetUpdatesRequest { group_id, after_event_seq, page_size, after_entry_token: group_id as u64 };
        assert_parsed(&parse::get_updates(&updates), |read| {
            assert!(read.after.event_seq.get() >= 0 && (1..=UPDATES_PAGE.1).contains(&read.size.get()));
            assert_eq!(read.after.entry_token, group_id as u64, "any token is taken as given");
        });
        let unread = pb::GetUnreadCountsRequest { group_ids };
        assert_parsed(&parse::unread_groups(&unread), |groups| {
            assert!(groups.len() <= MAX_UNREAD_GROUPS && distinct(groups.iter()));
        });
    }

    #[test]
    fn system_events(events in prop::collection::vec(system_event(), 0..=40)) {
        let request = pb::AppendSystemUpdatesRequest { events };
        assert_parsed(&parse::system_events(&request), |parsed| {
            assert!(!parsed.is_empty() && parsed.len() <= MAX_SYSTEM_EVENTS);
            assert!(parsed.iter().all(|event| event.outbox_id > 0 && event.event.group_id > 0));
        });
    }

    #[test]
    fn system_events_past_the_limit(count in MAX_SYSTEM_EVENTS + 1..MAX_SYSTEM_EVENTS * 10) {
        let request = pb::AppendSystemUpdatesRequest { events: vec![pb::SystemEvent::default(); count] };
        let refused = parse::system_events(&request).expect_err("too many events");
        assert_eq!(refused.violations().len(), 1, "refused on its length alone");
        fanfare_core::arbitrary::assert_bounded(&refused);
    }
}
