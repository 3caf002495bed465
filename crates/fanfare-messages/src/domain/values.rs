//! Validated values of the messages domain, each parsed from a request field that it names
//! when it refuses it.

use fanfare_core::validation::{self, FieldViolation};
use fanfare_proto::common::v1 as common;

/// Default longest message text, in characters (configurable).
pub const DEFAULT_MAX_TEXT_CHARS: usize = 4_096;
/// Longest idempotency key.
pub const MAX_CLIENT_MESSAGE_ID_CHARS: usize = 128;
/// Most attachments on one message.
pub const MAX_ATTACHMENTS: usize = 10;
/// Most users mentioned by one message.
pub const MAX_MENTIONS: usize = 50;
/// Longest emoji (a grapheme cluster can take several code points).
pub const MAX_EMOJI_CHARS: usize = 16;
/// Longest media id.
pub const MAX_MEDIA_ID_CHARS: usize = 256;
/// Longest MIME type.
pub const MAX_MIME_TYPE_CHARS: usize = 128;

/// The sender's idempotency key: 1 to 128 printable characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClientMessageId(String);

impl ClientMessageId {
    /// Parses the request field.
    pub fn parse(field: &str, raw: &str) -> Result<Self, FieldViolation> {
        if raw.trim().is_empty() && !raw.is_empty() {
            return Err(FieldViolation::new(field, "must not be only whitespace"));
        }
        validation::text(field, raw, 1, MAX_CLIENT_MESSAGE_ID_CHARS).map(Self)
    }

    /// Wraps a stored key.
    pub fn from_trusted(raw: String) -> Self {
        Self(raw)
    }

    /// The key.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Message text, up to the configured length (may be empty when attachments carry the
/// message).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MessageText(String);

impl MessageText {
    /// Parses the request field with the configured limit.
    pub fn parse(field: &str, raw: &str, max_chars: usize) -> Result<Self, FieldViolation> {
        validation::text(field, raw, 0, max_chars).map(Self)
    }

    /// Wraps stored text.
    pub fn from_trusted(raw: String) -> Self {
        Self(raw)
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether there is no text.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A reaction emoji: 1 to 16 characters, no whitespace or control characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Emoji(String);

impl Emoji {
    /// Parses the request field.
    pub fn parse(field: &str, raw: &str) -> Result<Self, FieldViolation> {
        if raw.chars().any(char::is_whitespace) {
            return Err(FieldViolation::new(field, "must not contain whitespace"));
        }
        validation::text(field, raw, 1, MAX_EMOJI_CHARS).map(Self)
    }

    /// Wraps a stored emoji.
    pub fn from_trusted(raw: String) -> Self {
        Self(raw)
    }

    /// The emoji.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A media reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Attachment {
    /// Id in the media store.
    pub media_id: String,
    /// MIME type (`type/subtype`).
    pub mime_type: String,
    /// Size in bytes, positive.
    pub size_bytes: i64,
    /// Width in pixels, 0 when not applicable.
    pub width: i32,
    /// Height in pixels, 0 when not applicable.
    pub height: i32,
    /// Duration in milliseconds, 0 when not applicable.
    pub duration_ms: i64,
}

impl Attachment {
    /// Parses `attachments[index]`, naming sub-fields such as `attachments[0].mime_type`.
    pub fn parse(field: &str, raw: &common::Attachment) -> Result<Self, Vec<FieldViolation>> {
        let mut violations = Vec::new();
        if let Err(violation) = validation::text(&format!("{field}.media_id"), &raw.media_id, 1, MAX_MEDIA_ID_CHARS) {
            violations.push(violation);
        }
        let mime_ok =
            validation::text(&format!("{field}.mime_type"), &raw.mime_type, 3, MAX_MIME_TYPE_CHARS).and_then(|mime| {
                let well_formed = mime.split_once('/').is_some_and(|(kind, sub)| {
                    !kind.is_empty() && !sub.is_empty() && !mime.chars().any(char::is_whitespace)
                });
                if well_formed {
                    Ok(mime)
                } else {
                    Err(FieldViolation::new(format!("{field}.mime_type"), "must look like type/subtype"))
                }
            });
        if let Err(violation) = mime_ok {
            violations.push(violation);
        }
        if raw.size_bytes <= 0 {
            violations.push(FieldViolation::new(format!("{field}.size_bytes"), "must be positive"));
        }
        for (name, value) in
            [("width", i64::from(raw.width)), ("height", i64::from(raw.height)), ("duration_ms", raw.duration_ms)]
        {
            if value < 0 {
                violations.push(FieldViolation::new(format!("{field}.{name}"), "must not be negative"));
            }
        }
        if !violations.is_empty() {
            return Err(violations);
        }
        Ok(Self {
            media_id: raw.media_id.clone(),
            mime_type: raw.mime_type.clone(),
            size_bytes: raw.size_bytes,
            width: raw.width,
            height: raw.height,
            duration_ms: raw.duration_ms,
        })
    }

    /// The wire form.
    pub fn to_proto(&self) -> common::Attachment {
        common::Attachment {
            media_id: self.media_id.clone(),
            mime_type: self.mime_type.clone(),
            size_bytes: self.size_bytes,
            width: self.width,
            height: self.height,
            duration_ms: self.duration_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_message_ids_are_bounded() {
        assert!(ClientMessageId::parse("client_message_id", "").is_err());
        assert!(ClientMessageId::parse("client_message_id", "  ").is_err());
        assert!(ClientMessageId::parse("client_message_id", &"k".repeat(129)).is_err());
        assert!(ClientMessageId::parse("client_message_id", "abc-123").is_ok());
    }

    #[test]
    fn text_length_is_configurable() {
        assert!(MessageText::parse("text", "hello", 5).is_ok());
        assert!(MessageText::parse("text", "hello!", 5).is_err());
    }

    #[test]
    fn emoji_must_be_short_and_without_spaces() {
        assert!(Emoji::parse("emoji", "🔥").is_ok());
        assert!(Emoji::parse("emoji", "").is_err());
        assert!(Emoji::parse("emoji", "a b").is_err());
        assert!(Emoji::parse("emoji", &"x".repeat(17)).is_err());
    }

    #[test]
    fn attachments_name_each_bad_sub_field() {
        let raw = common::Attachment {
            media_id: String::new(),
            mime_type: "jpeg".into(),
            size_bytes: 0,
            width: -1,
            height: 0,
            duration_ms: 0,
        };
        let violations = Attachment::parse("attachments[0]", &raw).unwrap_err();
        let fields: Vec<&str> = violations.iter().map(|violation| violation.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "attachments[0].media_id",
                "attachments[0].mime_type",
                "attachments[0].size_bytes",
                "attachments[0].width"
            ]
        );
        let good = common::Attachment {
            media_id: "m1".into(),
            mime_type: "image/jpeg".into(),
            size_bytes: 10,
            width: 4,
            height: 3,
            duration_ms: 0,
        };
        assert!(Attachment::parse("attachments[0]", &good).is_ok());
    }
}
