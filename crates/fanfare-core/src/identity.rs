//! Who is acting: the user id that callers pass in request metadata.

use tonic::metadata::MetadataMap;

use crate::ids::UserId;
use crate::status::{self, ErrorReason, Reason};

/// Metadata key carrying the acting user (a positive int64, in decimal).
pub const USER_ID_HEADER: &str = "x-fanfare-user-id";

/// Why the acting user could not be read from a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// The metadata entry is absent.
    #[error("missing `{USER_ID_HEADER}` metadata: every call must say which user is acting")]
    Missing,
    /// The metadata entry is present but not a positive int64.
    #[error("`{USER_ID_HEADER}` metadata must be a positive int64 user id (got {0:?})")]
    Malformed(String),
}

impl From<IdentityError> for tonic::Status {
    fn from(error: IdentityError) -> Self {
        let (code, reason) = match error {
            IdentityError::Missing => (tonic::Code::Unauthenticated, ErrorReason::Unauthenticated),
            IdentityError::Malformed(_) => (tonic::Code::InvalidArgument, ErrorReason::InvalidArgument),
        };
        status::new(code, Reason::new(reason).with("header", USER_ID_HEADER), error.to_string())
    }
}

/// Reads the acting user from request metadata.
pub fn acting_user(metadata: &MetadataMap) -> Result<UserId, IdentityError> {
    let Some(value) = metadata.get(USER_ID_HEADER) else {
        return Err(IdentityError::Missing);
    };
    let text = value.to_str().map_err(|_| IdentityError::Malformed("<non-ASCII>".to_owned()))?;
    let raw: i64 = text.trim().parse().map_err(|_| IdentityError::Malformed(shown(text)))?;
    UserId::parse(USER_ID_HEADER, raw).map_err(|_| IdentityError::Malformed(shown(text)))
}

/// Longest part of a malformed user id repeated in the error (an int64 has at most 20
/// characters): the message is sent twice, in `grpc-message` and in the details, so it must
/// not grow with the header.
const MAX_SHOWN_BYTES: usize = 32;

/// `text`, cut to [`MAX_SHOWN_BYTES`] with `…` when longer.
fn shown(text: &str) -> String {
    if text.len() <= MAX_SHOWN_BYTES {
        return text.to_owned();
    }
    let mut end = MAX_SHOWN_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// Puts the acting user into outgoing metadata, for calls from one service to another.
pub fn set_acting_user(metadata: &mut MetadataMap, user: UserId) {
    let value = user.get().to_string().parse().expect("a decimal integer is valid ASCII metadata");
    metadata.insert(USER_ID_HEADER, value);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata_with(value: &str) -> MetadataMap {
        let mut metadata = MetadataMap::new();
        metadata.insert(USER_ID_HEADER, value.parse().unwrap());
        metadata
    }

    #[test]
    fn reads_a_positive_user_id() {
        assert_eq!(acting_user(&metadata_with("42")).unwrap().get(), 42);
    }

    #[test]
    fn missing_is_unauthenticated_and_malformed_is_invalid() {
        let missing = tonic::Status::from(acting_user(&MetadataMap::new()).unwrap_err());
        assert_eq!(missing.code(), tonic::Code::Unauthenticated);
        assert_eq!(status::reason_of(&missing), Some(ErrorReason::Unauthenticated));
        for bad in ["", "abc", "0", "-3", "99999999999999999999"] {
            let status = tonic::Status::from(acting_user(&metadata_with(bad)).unwrap_err());
            assert_eq!(status.code(), tonic::Code::InvalidArgument, "{bad:?}");
            assert_eq!(status::reason_of(&status), Some(ErrorReason::InvalidArgument), "{bad:?}");
        }
    }

    #[test]
    fn a_long_bad_id_is_cut_in_the_error() {
        let long = "9".repeat(4_000);
        let status = tonic::Status::from(acting_user(&metadata_with(&long)).unwrap_err());
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert!(status.message().len() < 200, "{}", status.message());
        assert!(status.message().contains(&"9".repeat(MAX_SHOWN_BYTES)), "{}", status.message());
    }

    #[test]
    fn round_trips_through_outgoing_metadata() {
        let mut metadata = MetadataMap::new();
        set_acting_user(&mut metadata, UserId::from_trusted(9));
        assert_eq!(acting_user(&metadata).unwrap().get(), 9);
    }
}
