//! The groups service's metrics: their names, and their help text and units for the
//! Prometheus endpoint. The names are part of the service's interface (docs/operations.md,
//! the dashboards and alerts in deploy/); the gRPC server's own metrics are fanfare-core's.

use metrics::{Unit, describe_counter, describe_gauge};

/// Outbox rows appended to the update log.
pub const OUTBOX_RELAYED_TOTAL: &str = "fanfare_groups_outbox_relayed_total";
/// Outbox rows set aside because their payload is not a valid event.
pub const OUTBOX_CORRUPT_TOTAL: &str = "fanfare_groups_outbox_corrupt_total";
/// Age of the oldest unpublished outbox row, at the last pass.
pub const OUTBOX_LAG_SECONDS: &str = "fanfare_groups_outbox_lag_seconds";
/// Follow checks asked of the fanout service, by `outcome`: `following`, `not_following`,
/// `unavailable` (retry may help) or `failed` (a bug or a misconfiguration).
pub const FOLLOW_CHECKS_TOTAL: &str = "fanfare_groups_follow_checks_total";

/// Describes the service's metrics (help text and units); called once when the service
/// starts ([`crate::serve`]), after the process installed its recorder.
pub fn describe() {
    // Its Postgres pool's, recorded only when it runs on Postgres.
    fanfare_postgres::metrics::describe();
    describe_counter!(OUTBOX_RELAYED_TOTAL, Unit::Count, "Groups outbox rows appended to the messages update log.");
    describe_counter!(
        OUTBOX_CORRUPT_TOTAL,
        Unit::Count,
        "Groups outbox rows skipped because their payload is not a valid GroupEvent (each one is logged)."
    );
    describe_gauge!(
        OUTBOX_LAG_SECONDS,
        Unit::Seconds,
        "Age of the oldest groups outbox row not yet appended to the update log, at the relay's last pass."
    );
    describe_counter!(
        FOLLOW_CHECKS_TOTAL,
        Unit::Count,
        "Follow checks the groups service asked of the fanout service for FOLLOWERS_ONLY joins, by outcome."
    );
}
