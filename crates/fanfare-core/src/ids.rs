//! Identifier newtypes, parsed once at the edge: positive int64 ids of users and groups, and
//! the two gapless sequences of a group's log (its messages and its updates).

use std::fmt;

use crate::validation::FieldViolation;

macro_rules! positive_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(i64);

        impl $name {
            /// Parses a raw id from a request field; zero and negatives are refused.
            pub fn parse(field: &str, raw: i64) -> Result<Self, FieldViolation> {
                if raw > 0 {
                    Ok(Self(raw))
                } else {
                    Err(FieldViolation::new(field, format!("must be a positive id (got {raw})")))
                }
            }

            /// Wraps an id read back from storage, where only valid ids are ever written.
            pub fn from_trusted(raw: i64) -> Self {
                debug_assert!(raw > 0, "stored ids are positive");
                Self(raw)
            }

            /// The raw value, for storage and the wire.
            pub fn get(self) -> i64 {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(formatter)
            }
        }
    };
}

positive_id!(
    /// A user of the app, as the app's user service numbers them.
    UserId
);
positive_id!(
    /// A group, numbered by the groups service.
    GroupId
);

macro_rules! log_seq {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        pub struct $name(i64);

        impl $name {
            /// Before the first: the position of an empty sequence.
            pub const ZERO: Self = Self(0);

            /// Parses a raw seq naming an entry: zero and negatives are refused.
            pub fn parse(field: &str, raw: i64) -> Result<Self, FieldViolation> {
                if raw > 0 {
                    Ok(Self(raw))
                } else {
                    Err(FieldViolation::new(field, format!("must be a positive sequence number (got {raw})")))
                }
            }

            /// Parses a raw position to read after: zero (from the start) and up.
            pub fn parse_position(field: &str, raw: i64) -> Result<Self, FieldViolation> {
                if raw >= 0 {
                    Ok(Self(raw))
                } else {
                    Err(FieldViolation::new(field, format!("must not be negative (got {raw})")))
                }
            }

            /// Wraps a seq read back from storage or computed from one, never negative.
            pub fn from_trusted(raw: i64) -> Self {
                debug_assert!(raw >= 0, "sequence numbers are never negative");
                Self(raw)
            }

            /// The raw value, for storage and the wire.
            pub fn get(self) -> i64 {
                self.0
            }

            /// The seq after this one.
            #[must_use]
            pub fn next(self) -> Self {
                Self(self.0 + 1)
            }

            /// The seq before this one (`ZERO` stays `ZERO`).
            #[must_use]
            pub fn previous(self) -> Self {
                Self((self.0 - 1).max(0))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(formatter)
            }
        }
    };
}

log_seq!(
    /// A message's number in its group: 1, 2, 3… in commit order with no gap (0 before the
    /// first message).
    MessageSeq
);
log_seq!(
    /// An update's number in its group's log: 1, 2, 3… in commit order with no gap (0 before
    /// the first update). Every message is an update; not every update is a message.
    EventSeq
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_and_negative_ids_are_refused_with_the_field_name() {
        assert_eq!(UserId::parse("user_id", 0).unwrap_err().field, "user_id");
        assert!(GroupId::parse("group_id", -5).is_err());
        assert_eq!(GroupId::parse("group_id", 7).unwrap().get(), 7);
    }

    #[test]
    fn seqs_name_entries_from_one_and_positions_from_zero() {
        assert_eq!(MessageSeq::parse("message_seq", 0).unwrap_err().field, "message_seq");
        assert_eq!(EventSeq::parse_position("after_event_seq", 0).unwrap(), EventSeq::ZERO);
        assert!(EventSeq::parse_position("after_event_seq", -1).is_err());
        assert_eq!(EventSeq::ZERO.next().get(), 1);
        assert_eq!(EventSeq::ZERO.previous(), EventSeq::ZERO);
    }
}
