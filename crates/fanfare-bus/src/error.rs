//! The bus's one error type, and how Redis errors are sorted into it.

use std::io;
use std::time::Duration;

use ::redis::{ErrorKind, RedisError, ServerErrorKind};

/// Why a bus operation failed. Whatever the variant, a failed publish published nothing.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// Redis could not be reached, the connection broke mid-command, Redis did not answer in
    /// time, or it is temporarily unable to serve (loading, failing over). Retry later.
    #[error("the update bus is unavailable")]
    Unavailable(#[source] RedisError),
    /// Redis answered with an error that retrying will not fix by itself (refused by an ACL,
    /// wrong password, out of memory).
    #[error("the update bus refused the command")]
    Refused(#[source] RedisError),
    /// The configuration cannot work, e.g. the Redis URL does not parse.
    #[error("the update bus is misconfigured")]
    InvalidConfig(#[source] RedisError),
    /// The [`Subscriber`](crate::Subscriber) this handle belonged to was dropped.
    #[error("the subscriber is closed")]
    Closed,
}

impl BusError {
    /// Sorts a Redis error into [`BusError::Unavailable`] or [`BusError::Refused`].
    pub(crate) fn from_redis(error: RedisError) -> Self {
        if is_transient(&error) { Self::Unavailable(error) } else { Self::Refused(error) }
    }

    /// The error for a Redis command that did not complete within `limit`.
    pub(crate) fn timed_out(what: &str, limit: Duration) -> Self {
        Self::Unavailable(timeout_error(what, limit))
    }
}

/// A Redis error standing for a command of ours that did not complete within `limit`.
pub(crate) fn timeout_error(what: &str, limit: Duration) -> RedisError {
    RedisError::from(io::Error::new(io::ErrorKind::TimedOut, format!("{what} did not complete within {limit:?}")))
}

/// Whether the error is about reaching Redis rather than about the command itself.
pub(crate) fn is_transient(error: &RedisError) -> bool {
    // A wrong password asks the connection to be replaced, but a new one fails the same way.
    if error.kind() == ErrorKind::AuthenticationFailed {
        return false;
    }
    if error.is_io_error()
        || error.is_timeout()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.is_unrecoverable_error()
    {
        return true;
    }
    matches!(
        error.kind(),
        ErrorKind::Server(
            ServerErrorKind::BusyLoading
                | ServerErrorKind::MasterDown
                | ServerErrorKind::TryAgain
                | ServerErrorKind::ClusterDown
                | ServerErrorKind::ReadOnly
        )
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_failures_are_unavailable_and_server_refusals_are_refused() {
        let refused_connection = RedisError::from(io::Error::from(io::ErrorKind::ConnectionRefused));
        assert!(matches!(BusError::from_redis(refused_connection), BusError::Unavailable(_)));
        assert!(matches!(BusError::timed_out("publish", Duration::from_secs(1)), BusError::Unavailable(_)));
        let denied = RedisError::from((ErrorKind::AuthenticationFailed, "wrong password"));
        assert!(matches!(BusError::from_redis(denied), BusError::Refused(_)));
    }
}
