//! The runtime every Fanfare service shares: ids, validation, caller identity, paging,
//! config, error→`Status` helpers, telemetry, shutdown and the gRPC server builder.

pub mod config;
pub mod identity;
pub mod ids;
pub mod paging;
pub mod status;
pub mod time;
pub mod validation;

pub use fanfare_proto as proto;
