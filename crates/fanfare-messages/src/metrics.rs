//! The messages service's own metrics: names, help text and units (docs/operations.md,
//! "Metrics", lists them with their labels). The gRPC and rate-limit metrics every service
//! shares are described in `fanfare_core::metrics`.

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};

/// Time of one group-commit transaction.
pub const COMMIT_SECONDS: &str = "fanfare_messages_commit_seconds";
/// Writes per group commit.
pub const COMMIT_BATCH_SIZE: &str = "fanfare_messages_commit_batch_size";
/// Update-log entries published to the bus.
pub const PUBLISHED_TOTAL: &str = "fanfare_messages_published_total";
/// Committed entries left to the outbox because their lane had spilled.
pub const PUBLISH_DEFERRED_TOTAL: &str = "fanfare_messages_publish_deferred_total";
/// Published entries deleted from the outbox.
pub const OUTBOX_ACKED_TOTAL: &str = "fanfare_messages_outbox_acked_total";
/// Entries recovery republished.
pub const RECOVERED_TOTAL: &str = "fanfare_messages_recovered_total";
/// Outbox lanes holding entries older than the recovery grace.
pub const OUTBOX_ORPHANED_LANES: &str = "fanfare_messages_outbox_orphaned_lanes";

/// Describes the service's metrics; call once the recorder is installed (later calls only
/// repeat the same text).
pub fn describe() {
    // Its Postgres pool's, recorded only when it runs on Postgres.
    fanfare_postgres::metrics::describe();
    describe_histogram!(COMMIT_SECONDS, Unit::Seconds, "Time of one group-commit transaction.");
    describe_histogram!(
        COMMIT_BATCH_SIZE,
        Unit::Count,
        "Writes per group commit (higher under load: batching at work)."
    );
    describe_counter!(
        PUBLISHED_TOTAL,
        Unit::Count,
        "Update-log entries published to the bus (by the committing pod, a lane catching up, or recovery)."
    );
    describe_counter!(
        PUBLISH_DEFERRED_TOTAL,
        Unit::Count,
        "Committed entries left to the outbox because their lane had spilled (bus down or slow)."
    );
    describe_counter!(
        OUTBOX_ACKED_TOTAL,
        Unit::Count,
        "Published entries deleted from the outbox by the batched acknowledgements."
    );
    describe_counter!(
        RECOVERED_TOTAL,
        Unit::Count,
        "Entries recovery republished: committed but never published by their pod (it crashed or lost the bus)."
    );
    describe_gauge!(
        OUTBOX_ORPHANED_LANES,
        Unit::Count,
        "Outbox lanes holding entries older than the recovery grace, at this pod's last look."
    );
}
