//! The creator-follower graph: who follows whom, since when, and the counters kept with
//! the edges.
//!
//! - [`domain`]: the edge, its listing positions and counters, and the rules that need no
//!   data (nobody follows themselves).
//! - [`store`]: edges and counters ([`FollowStore`]: Postgres and memory, one conformance
//!   suite).
//! - [`service`]: the RPCs' orchestration ([`FollowService`]).
//!
//! Fan-out jobs walk the graph a page at a time (`crate::jobs`); live delivery does not use
//! it.

pub mod domain;
pub mod service;
pub mod store;

pub use service::FollowService;
pub use store::{FollowStore, MemoryFollowStore, PostgresFollowStore, StoreError, StoreResult};
