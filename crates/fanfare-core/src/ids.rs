//! Identifier newtypes: positive int64 ids of users and groups, parsed once at the edge.

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_and_negative_ids_are_refused_with_the_field_name() {
        assert_eq!(UserId::parse("user_id", 0).unwrap_err().field, "user_id");
        assert!(GroupId::parse("group_id", -5).is_err());
        assert_eq!(GroupId::parse("group_id", 7).unwrap().get(), 7);
    }
}
