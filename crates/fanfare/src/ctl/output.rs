//! What `fanfare ctl` prints: JSON exactly as grpcurl prints it (the proto3 JSON mapping,
//! through the descriptor set the services serve for reflection), or short human-readable
//! lines for people.

use std::sync::OnceLock;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use fanfare_proto::common::v1 as common;
use fanfare_proto::common::v1::group_event::Change as GroupChange;
use fanfare_proto::common::v1::update::Change;
use fanfare_proto::fanout::v1 as fanout;
use prost_reflect::{DescriptorPool, DynamicMessage};
use prost_types::Timestamp;

/// Every Fanfare message type, for the JSON mapping.
fn pool() -> anyhow::Result<&'static DescriptorPool> {
    static POOL: OnceLock<Result<DescriptorPool, String>> = OnceLock::new();
    POOL.get_or_init(|| DescriptorPool::decode(fanfare_proto::FILE_DESCRIPTOR_SET).map_err(|error| error.to_string()))
        .as_ref()
        .map_err(|error| anyhow::anyhow!("the embedded descriptor set does not decode: {error}"))
}

/// `message`, of the proto type `full_name`, as a dynamic message.
fn dynamic(message: &impl prost::Message, full_name: &str) -> anyhow::Result<DynamicMessage> {
    let descriptor = pool()?.get_message_by_name(full_name).with_context(|| format!("no message type {full_name}"))?;
    DynamicMessage::decode(descriptor, message.encode_to_vec().as_slice())
        .with_context(|| format!("re-reading a {full_name}"))
}

/// `message` in the proto3 JSON mapping, as a value to embed in a larger document.
pub(super) fn json_value(message: &impl prost::Message, full_name: &str) -> anyhow::Result<serde_json::Value> {
    Ok(serde_json::to_value(dynamic(message, full_name)?)?)
}

/// Prints `message` as indented JSON, fields in proto order (as grpcurl does).
pub(super) fn print_json(message: &impl prost::Message, full_name: &str) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(&dynamic(message, full_name)?)?);
    Ok(())
}

/// Prints `message` as JSON on one line (streams: one object per line).
pub(super) fn print_json_line(message: &impl prost::Message, full_name: &str) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string(&dynamic(message, full_name)?)?);
    Ok(())
}

/// A wire time as chrono's, if it is one.
pub(super) fn datetime(timestamp: &Timestamp) -> Option<DateTime<Utc>> {
    let nanos = u32::try_from(timestamp.nanos).ok()?;
    DateTime::from_timestamp(timestamp.seconds, nanos)
}

/// `2026-01-31 12:00:00.123 UTC`, or `-` when unset.
pub(super) fn time(timestamp: Option<&Timestamp>) -> String {
    match timestamp.and_then(datetime) {
        Some(time) => time.format("%Y-%m-%d %H:%M:%S%.3f UTC").to_string(),
        None => "-".to_owned(),
    }
}

/// `12:00:00.123`, for lines of a stream.
fn clock(timestamp: Option<&Timestamp>) -> String {
    match timestamp.and_then(datetime) {
        Some(time) => time.format("%H:%M:%S%.3f").to_string(),
        None => "--:--:--.---".to_owned(),
    }
}

/// An enum value's name without its type prefix (`GROUP_KIND_CHAT` → `CHAT`).
fn short(name: Option<&'static str>, prefix: &str, raw: i32) -> String {
    match name {
        Some(name) => name.strip_prefix(prefix).unwrap_or(name).to_owned(),
        None => format!("UNKNOWN({raw})"),
    }
}

pub(super) fn group_kind(raw: i32) -> String {
    short(common::GroupKind::try_from(raw).ok().map(|value| value.as_str_name()), "GROUP_KIND_", raw)
}

pub(super) fn role(raw: i32) -> String {
    short(common::Role::try_from(raw).ok().map(|value| value.as_str_name()), "ROLE_", raw)
}

pub(super) fn join_policy(raw: i32) -> String {
    short(common::JoinPolicy::try_from(raw).ok().map(|value| value.as_str_name()), "JOIN_POLICY_", raw)
}

pub(super) fn post_policy(raw: i32) -> String {
    short(common::PostPolicy::try_from(raw).ok().map(|value| value.as_str_name()), "POST_POLICY_", raw)
}

fn join_method(raw: i32) -> String {
    short(common::JoinMethod::try_from(raw).ok().map(|value| value.as_str_name()), "JOIN_METHOD_", raw)
}

pub(super) fn job_kind(raw: i32) -> String {
    short(fanout::FanoutJobKind::try_from(raw).ok().map(|value| value.as_str_name()), "FANOUT_JOB_KIND_", raw)
}

pub(super) fn job_state(raw: i32) -> String {
    short(fanout::FanoutJobState::try_from(raw).ok().map(|value| value.as_str_name()), "FANOUT_JOB_STATE_", raw)
}

pub(super) fn resync_reason(raw: i32) -> String {
    short(common::ResyncReason::try_from(raw).ok().map(|value| value.as_str_name()), "RESYNC_REASON_", raw)
}

pub(super) fn membership_change_kind(raw: i32) -> String {
    let name = fanout::MembershipChangeKind::try_from(raw).ok().map(|value| value.as_str_name());
    short(name, "MEMBERSHIP_CHANGE_KIND_", raw)
}

/// A message's content in a few words: its text (cut at 80 characters) and attachments.
fn content(message: &common::Message) -> String {
    if message.deleted_at.is_some() {
        return "(deleted)".to_owned();
    }
    let mut text: String = message.text.chars().take(80).collect();
    if message.text.chars().count() > 80 {
        text.push('…');
    }
    let mut described = if text.is_empty() { "(no text)".to_owned() } else { format!("{text:?}") };
    if !message.attachments.is_empty() {
        described.push_str(&format!(" +{} attachment(s)", message.attachments.len()));
    }
    described
}

/// One update of a group's log on one line: `group 1 #7 12:00:00.123 user 2 posted …`.
pub(super) fn update_line(update: &common::Update) -> String {
    let what = match &update.change {
        Some(Change::MessagePosted(posted)) => match &posted.message {
            Some(message) => {
                format!("user {} posted message {}: {}", message.sender_user_id, message.message_seq, content(message))
            }
            None => "a message was posted".to_owned(),
        },
        Some(Change::MessageEdited(edited)) => match &edited.message {
            Some(message) => format!(
                "user {} edited message {} (version {}): {}",
                message.sender_user_id,
                message.message_seq,
                message.version,
                content(message)
            ),
            None => "a message was edited".to_owned(),
        },
        Some(Change::MessageDeleted(deleted)) => {
            format!("user {} deleted message {}", deleted.deleted_by_user_id, deleted.message_seq)
        }
        Some(Change::MessagesPurged(purged)) => format!(
            "user {} purged {} message(s) of user {}",
            purged.purged_by_user_id,
            purged.message_seqs.len(),
            purged.user_id
        ),
        Some(Change::ReactionsChanged(changed)) => {
            let totals: Vec<String> =
                changed.reactions.iter().map(|reaction| format!("{} {}", reaction.emoji, reaction.count)).collect();
            format!("reactions on message {}: {}", changed.message_seq, none_if_empty(&totals.join(", ")))
        }
        Some(Change::MessagePinned(pinned)) => {
            format!("user {} pinned message {}", pinned.pinned_by_user_id, pinned.message_seq)
        }
        Some(Change::MessageUnpinned(unpinned)) => {
            format!("user {} unpinned message {}", unpinned.unpinned_by_user_id, unpinned.message_seq)
        }
        Some(Change::GroupEvent(event)) => group_event(event),
        None => "(an update of a kind this ctl does not know)".to_owned(),
    };
    format!("group {} #{} {} {what}", update.group_id, update.event_seq, clock(update.occurred_at.as_ref()))
}

fn none_if_empty(text: &str) -> &str {
    if text.is_empty() { "none" } else { text }
}

/// A membership or settings change in words.
fn group_event(event: &common::GroupEvent) -> String {
    let actor = event.actor_user_id;
    let until = |timestamp: Option<&Timestamp>| match timestamp {
        Some(timestamp) => format!("until {}", time(Some(timestamp))),
        None => "permanently".to_owned(),
    };
    match &event.change {
        Some(GroupChange::GroupCreated(created)) => {
            format!("user {actor} created the {} group {:?}", group_kind(created.kind), created.title)
        }
        Some(GroupChange::MemberJoined(joined)) => format!(
            "user {} joined ({}, {})",
            joined.user_id,
            join_method(joined.method).to_lowercase(),
            role(joined.role).to_lowercase()
        ),
        Some(GroupChange::MemberLeft(left)) => format!("user {} left", left.user_id),
        Some(GroupChange::MemberRemoved(removed)) => format!("user {actor} removed user {}", removed.user_id),
        Some(GroupChange::MemberBanned(banned)) => {
            format!("user {actor} banned user {} {}", banned.user_id, until(banned.until.as_ref()))
        }
        Some(GroupChange::MemberUnbanned(unbanned)) => format!("user {actor} unbanned user {}", unbanned.user_id),
        Some(GroupChange::MemberMuted(muted)) => {
            format!("user {actor} muted user {} {}", muted.user_id, until(muted.until.as_ref()))
        }
        Some(GroupChange::MemberUnmuted(unmuted)) => format!("user {actor} unmuted user {}", unmuted.user_id),
        Some(GroupChange::MemberRoleChanged(changed)) => {
            format!("user {actor} made user {} {}", changed.user_id, role(changed.role).to_lowercase())
        }
        Some(GroupChange::OwnershipTransferred(transferred)) => format!(
            "ownership moved from user {} to user {}",
            transferred.previous_owner_user_id, transferred.new_owner_user_id
        ),
        Some(GroupChange::GroupSettingsChanged(settings)) => format!(
            "user {actor} changed the settings: title {:?}, join {}, posting {}, slow mode {} s, history {}",
            settings.title,
            join_policy(settings.join_policy),
            post_policy(settings.post_policy),
            settings.slow_mode_seconds,
            history(settings.history_visible_to_new_members),
        ),
        Some(GroupChange::GroupArchived(_)) => format!("user {actor} archived the group"),
        None => format!("user {actor} changed the group (a change this ctl does not know)"),
    }
}

/// Whether new members see earlier history, in words.
pub(super) fn history(visible: bool) -> &'static str {
    if visible { "visible to new members" } else { "hidden from new members" }
}

/// `1@7, 2@12`: per group, the last event_seq delivered.
pub(super) fn positions(positions: &[fanout::GroupPosition]) -> String {
    let listed: Vec<String> =
        positions.iter().map(|position| format!("{}@{}", position.group_id, position.event_seq)).collect();
    none_if_empty(&listed.join(", ")).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_follows_the_proto3_mapping_like_grpcurl() {
        let group = fanfare_proto::groups::v1::Group {
            group_id: 7,
            kind: common::GroupKind::Chat as i32,
            title: "Friends".to_owned(),
            created_at: Some(Timestamp { seconds: 0, nanos: 0 }),
            ..Default::default()
        };
        let json = json_value(&group, "fanfare.groups.v1.Group").expect("a known type");
        assert_eq!(json["groupId"], "7", "int64 as a string");
        assert_eq!(json["kind"], "GROUP_KIND_CHAT");
        assert_eq!(json["createdAt"], "1970-01-01T00:00:00Z");
        assert!(json.get("description").is_none(), "defaults left out: {json}");
    }

    #[test]
    fn updates_read_as_one_line() {
        let update = common::Update {
            group_id: 3,
            event_seq: 9,
            occurred_at: Some(Timestamp { seconds: 3_600, nanos: 5_000_000 }),
            entry_token: 1,
            previous_entry_token: 2,
            change: Some(Change::MessagePosted(common::MessagePosted {
                message: Some(common::Message {
                    message_seq: 4,
                    sender_user_id: 2,
                    text: "hi".to_owned(),
                    ..Default::default()
                }),
            })),
        };
        assert_eq!(update_line(&update), r#"group 3 #9 01:00:00.005 user 2 posted message 4: "hi""#);
        assert_eq!(group_kind(99), "UNKNOWN(99)");
        assert_eq!(job_state(fanout::FanoutJobState::Running as i32), "RUNNING");
    }
}
