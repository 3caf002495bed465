//! Validated values: each is built by parsing a raw request field and names that field
//! when it refuses it, so the rest of the service only ever sees valid data.

use fanfare_core::validation::{self, FieldViolation};
use fanfare_proto::common::v1 as common;

/// Longest title, in characters.
pub const MAX_TITLE_CHARS: usize = 128;
/// Longest description, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 2_048;
/// Longest avatar reference, in characters.
pub const MAX_AVATAR_REF_CHARS: usize = 512;
/// Longest ban reason, in characters.
pub const MAX_BAN_REASON_CHARS: usize = 512;
/// Longest slow mode interval: one day.
pub const MAX_SLOW_MODE_SECONDS: u32 = 86_400;
/// Longest minimum follow age of a FOLLOWERS_ONLY group: 365 days.
pub const MAX_MIN_FOLLOW_AGE_SECONDS: u32 = 365 * 86_400;
/// Length of an invite code.
pub const INVITE_CODE_LENGTH: usize = 16;

macro_rules! proto_enum {
    ($(#[$doc:meta])* $name:ident, $proto:ty, { $($(#[$vdoc:meta])* $variant:ident = $proto_variant:ident = $code:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vdoc])* $variant),+
        }

        impl $name {
            /// Parses a raw proto enum value; unspecified and unknown values name the field.
            pub fn parse(field: &str, raw: i32) -> Result<Self, FieldViolation> {
                match <$proto>::try_from(raw) {
                    $(Ok(<$proto>::$proto_variant) => Ok(Self::$variant),)+
                    _ => Err(FieldViolation::new(
                        field,
                        format!("must be one of {} (got {raw})", [$(<$proto>::$proto_variant.as_str_name()),+].join(", ")),
                    )),
                }
            }

            /// The proto value.
            pub fn to_proto(self) -> $proto {
                match self {
                    $(Self::$variant => <$proto>::$proto_variant),+
                }
            }

            /// The stable code stored in the database.
            pub fn code(self) -> i16 {
                match self {
                    $(Self::$variant => $code),+
                }
            }

            /// Reads a stored code back.
            pub fn from_code(code: i16) -> Option<Self> {
                match code {
                    $($code => Some(Self::$variant),)+
                    _ => None,
                }
            }
        }
    };
}

proto_enum!(
    /// What kind of group: decides who posts, the size limit and how people join.
    GroupKind, common::GroupKind, {
        /// Friends chatting.
        Chat = Chat = 1,
        /// A creator-run chat.
        Community = Community = 2,
        /// A creator channel.
        Broadcast = Broadcast = 3,
    }
);

proto_enum!(
    /// A member's role.
    Role, common::Role, {
        /// The one owner.
        Owner = Owner = 1,
        /// A moderator.
        Admin = Admin = 2,
        /// A plain member.
        Member = Member = 3,
    }
);

proto_enum!(
    /// How non-members may join.
    JoinPolicy, common::JoinPolicy, {
        /// Anyone may join.
        Open = Open = 1,
        /// Only followers of the owner.
        FollowersOnly = FollowersOnly = 2,
        /// Only with an invite or when added.
        InviteOnly = InviteOnly = 3,
        /// A request an owner or admin approves.
        Approval = Approval = 4,
    }
);

proto_enum!(
    /// Who may post.
    PostPolicy, common::PostPolicy, {
        /// Every member who is not muted.
        AllMembers = AllMembers = 1,
        /// Owner and admins only.
        AdminsOnly = AdminsOnly = 2,
    }
);

macro_rules! bounded_text {
    ($(#[$doc:meta])* $name:ident, min = $min:expr, max = $max:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct $name(String);

        impl $name {
            /// Parses a request field, naming it when refused.
            pub fn parse(field: &str, raw: &str) -> Result<Self, FieldViolation> {
                validation::text(field, raw, $min, $max).map(Self)
            }

            /// Wraps a value read back from storage.
            pub fn from_trusted(raw: String) -> Self {
                Self(raw)
            }

            /// The text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
    };
}

bounded_text!(
    /// A group's title: 1 to 128 characters.
    Title, min = 1, max = MAX_TITLE_CHARS
);
bounded_text!(
    /// A group's description: up to 2,048 characters.
    Description, min = 0, max = MAX_DESCRIPTION_CHARS
);
bounded_text!(
    /// A reference to an image in the media store: up to 512 characters.
    AvatarRef, min = 0, max = MAX_AVATAR_REF_CHARS
);
bounded_text!(
    /// Why a user was banned: up to 512 characters.
    BanReason, min = 0, max = MAX_BAN_REASON_CHARS
);

impl Title {
    /// Titles must say something: whitespace alone is refused.
    pub fn parse_title(field: &str, raw: &str) -> Result<Self, FieldViolation> {
        if !raw.is_empty() && raw.trim().is_empty() {
            return Err(FieldViolation::new(field, "must not be only whitespace"));
        }
        Self::parse(field, raw)
    }
}

/// A slow mode interval: 0 (off) to one day.
pub fn parse_slow_mode(field: &str, raw: i32) -> Result<u32, FieldViolation> {
    match u32::try_from(raw) {
        Ok(seconds) if seconds <= MAX_SLOW_MODE_SECONDS => Ok(seconds),
        _ => Err(FieldViolation::new(
            field,
            format!("must be between 0 and {MAX_SLOW_MODE_SECONDS} seconds (got {raw})"),
        )),
    }
}

/// A minimum follow age: 0 (none) to 365 days.
pub fn parse_min_follow_age(field: &str, raw: i32) -> Result<u32, FieldViolation> {
    match u32::try_from(raw) {
        Ok(seconds) if seconds <= MAX_MIN_FOLLOW_AGE_SECONDS => Ok(seconds),
        _ => Err(FieldViolation::new(
            field,
            format!("must be between 0 and {MAX_MIN_FOLLOW_AGE_SECONDS} seconds (365 days) (got {raw})"),
        )),
    }
}

/// The alphabet of invite codes: letters and digits without look-alikes (0/O, 1/l/I).
const INVITE_ALPHABET: &[u8] = b"23456789abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ";

/// An invite code: 16 characters of an unambiguous alphabet.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct InviteCode(String);

impl InviteCode {
    /// A fresh random code (about 92 bits of entropy).
    pub fn generate() -> Self {
        use rand::Rng;
        let mut rng = rand::rng();
        let code = (0..INVITE_CODE_LENGTH)
            .map(|_| char::from(INVITE_ALPHABET[rng.random_range(0..INVITE_ALPHABET.len())]))
            .collect();
        Self(code)
    }

    /// Parses a code a caller passed.
    pub fn parse(field: &str, raw: &str) -> Result<Self, FieldViolation> {
        let well_formed = raw.len() == INVITE_CODE_LENGTH && raw.bytes().all(|byte| INVITE_ALPHABET.contains(&byte));
        if well_formed {
            Ok(Self(raw.to_owned()))
        } else if raw.is_empty() {
            Err(FieldViolation::new(field, "must not be empty"))
        } else {
            Err(FieldViolation::new(
                field,
                format!("must be a {INVITE_CODE_LENGTH}-character invite code as returned by CreateInvite"),
            ))
        }
    }

    /// Wraps a code read back from storage.
    pub fn from_trusted(raw: String) -> Self {
        Self(raw)
    }

    /// The code.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enums_refuse_unspecified_and_unknown_values() {
        assert_eq!(GroupKind::parse("kind", 1).unwrap(), GroupKind::Chat);
        let unspecified = GroupKind::parse("kind", 0).unwrap_err();
        assert!(unspecified.description.contains("GROUP_KIND_CHAT"), "{unspecified}");
        assert!(Role::parse("role", 99).is_err());
        for role in [Role::Owner, Role::Admin, Role::Member] {
            assert_eq!(Role::from_code(role.code()), Some(role));
            assert_eq!(Role::parse("role", role.to_proto() as i32).unwrap(), role);
        }
    }

    #[test]
    fn titles_are_bounded_and_not_blank() {
        assert!(Title::parse_title("title", "").is_err());
        assert!(Title::parse_title("title", "   ").is_err());
        assert!(Title::parse_title("title", &"x".repeat(MAX_TITLE_CHARS)).is_ok());
        assert!(Title::parse_title("title", &"x".repeat(MAX_TITLE_CHARS + 1)).is_err());
    }

    #[test]
    fn slow_mode_is_bounded() {
        assert_eq!(parse_slow_mode("s", 0).unwrap(), 0);
        assert!(parse_slow_mode("s", -1).is_err());
        assert!(parse_slow_mode("s", 86_401).is_err());
    }

    #[test]
    fn min_follow_age_is_bounded() {
        assert_eq!(parse_min_follow_age("m", 0).unwrap(), 0);
        assert_eq!(parse_min_follow_age("m", 31_536_000).unwrap(), MAX_MIN_FOLLOW_AGE_SECONDS);
        assert!(parse_min_follow_age("m", -1).is_err());
        assert!(parse_min_follow_age("m", 31_536_001).is_err());
    }

    #[test]
    fn invite_codes_round_trip_and_refuse_junk() {
        let code = InviteCode::generate();
        assert_eq!(InviteCode::parse("code", code.as_str()).unwrap(), code);
        assert!(InviteCode::parse("code", "").is_err());
        assert!(InviteCode::parse("code", "short").is_err());
        assert!(InviteCode::parse("code", "0000000000000000").is_err());
    }
}
