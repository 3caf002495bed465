//! The runtime every Fanfare service shares: ids, validation, caller identity, paging,
//! config, error→`Status` helpers, telemetry, shutdown and the gRPC server builder.

#[cfg(any(test, feature = "proptest"))]
pub mod arbitrary;
pub mod callers;
pub mod client;
pub mod config;
pub mod health;
pub mod identity;
pub mod ids;
pub mod layers;
pub mod metrics;
pub mod paging;
pub mod rate_limit;
pub mod server;
pub mod shutdown;
pub mod status;
pub mod telemetry;
pub mod time;
pub mod tls;
pub mod validation;
pub mod wire;

pub use fanfare_proto as proto;
