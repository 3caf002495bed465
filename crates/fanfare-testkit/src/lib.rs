//! Test support shared by every Fanfare test suite: fresh Postgres databases, services
//! spawned on port 0 over memory or Postgres, and clients that act as a given user.

pub mod groups;
pub mod stack;
pub mod tls_servers;

pub use fanfare_testdb::TestDatabase;
pub use groups::{Storage, TestGroups};
pub use stack::TestStack;

use fanfare_core::identity::USER_ID_HEADER;

/// Wraps a message in a request acting as `user_id` (any value, so tests can send bad ones).
pub fn as_user<T>(user_id: i64, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    let value = user_id.to_string().parse().expect("a decimal integer is valid metadata");
    request.metadata_mut().insert(USER_ID_HEADER, value);
    request
}
