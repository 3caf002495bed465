//! Generated protobuf messages and gRPC clients/servers for every Fanfare package.
//!
//! Modules mirror the proto packages (`fanfare.groups.v1` is [`groups::v1`]). `tonic` and
//! `prost` are re-exported so the whole workspace uses one version of each.

pub use prost;
pub use prost_types;
pub use tonic;

/// The encoded `FileDescriptorSet` of every Fanfare proto, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/fanfare_descriptor.bin"));

pub mod codec;
pub mod events;
pub mod frame;
pub mod redact;
pub mod visibility;

/// Types shared by every service (`fanfare.common.v1`).
pub mod common {
    /// Version 1.
    pub mod v1 {
        #![allow(missing_docs, clippy::all)]
        include!(concat!(env!("OUT_DIR"), "/fanfare.common.v1.rs"));
    }
}

/// The messages service (`fanfare.messages.v1`).
pub mod messages {
    /// Version 1.
    pub mod v1 {
        #![allow(missing_docs, clippy::all)]
        include!(concat!(env!("OUT_DIR"), "/fanfare.messages.v1.rs"));
    }
}

/// The fanout service (`fanfare.fanout.v1`).
pub mod fanout {
    /// Version 1.
    pub mod v1 {
        #![allow(missing_docs, clippy::all)]
        include!(concat!(env!("OUT_DIR"), "/fanfare.fanout.v1.rs"));
    }
}

/// The groups service (`fanfare.groups.v1`).
pub mod groups {
    /// Version 1.
    pub mod v1 {
        #![allow(missing_docs, clippy::all)]
        include!(concat!(env!("OUT_DIR"), "/fanfare.groups.v1.rs"));
    }
}
