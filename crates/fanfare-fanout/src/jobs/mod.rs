//! Creator-to-follower fan-out jobs: a creator's announcement ("join my new group", "new
//! broadcast post") delivered to every follower — one entry per follower in a Redis Stream
//! for the push service, and one live page per page of followers for those online.
//!
//! - [`domain`]: the job record, validated request values, progress (rate, ETA).
//! - [`store`]: jobs, checkpoints and leases ([`JobStore`]: Postgres and memory).
//! - [`sink`]: the push stream, exactly once per page ([`NotificationSink`]: Redis and memory).
//! - [`service`]: the RPCs' orchestration ([`JobService`]).
//! - [`worker`]: the workers that claim and run jobs ([`JobWorkers`]); [`pacing`] their rate.
//!
//! How the pieces keep the promise (each follower of the job notified once, whatever
//! crashes): a job is walked in keyset pages; each page is appended to the stream together
//! with a marker keyed by where the page starts, then checkpointed in Postgres under the
//! worker's lease. A crash between the two makes the next worker replay the page: the marker
//! answers, nothing is appended twice. A worker that lost its lease finds out at its
//! checkpoint, which writes nothing, and stops. See docs/fanout.md, "Fan-out jobs".

pub mod domain;
pub mod pacing;
pub mod service;
pub mod sink;
pub mod store;
pub mod worker;

pub use service::JobService;
pub use sink::{MemoryNotificationSink, NotificationSink, RedisStreamSink};
pub use store::{JobStore, MemoryJobStore, PostgresJobStore};
pub use worker::{JobOutcome, JobRunner, JobWorkers};
