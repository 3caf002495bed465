//! How fan-out job notifications reach the followers that are online: a job publishes one
//! [`NotificationPage`] per page of followers on [`NOTIFICATIONS_CHANNEL`]; every fanout pod
//! receives it and hands a notification to each listed follower with a stream open there.
//!
//! One publish per page (not per follower) keeps a million-follower job at a thousand bus
//! messages; each pod filters the ids against its own streams. Live delivery is best effort
//! (a pod that is reconnecting to the bus misses the page): the push stream is the record.

use fanfare_bus::{BusError, UpdateBus};
use fanfare_proto::prost::Message;

/// The bus channel every pod listens on for job notifications.
pub const NOTIFICATIONS_CHANNEL: &str = "fanfare:fanout:notifications";

/// One page of a fan-out job's followers, as broadcast to every fanout pod. Internal to the
/// fanout service (pods of one release talk it to each other).
#[derive(Clone, PartialEq, fanfare_proto::prost::Message)]
pub struct NotificationPage {
    /// The job.
    #[prost(int64, tag = "1")]
    pub job_id: i64,
    /// The creator.
    #[prost(int64, tag = "2")]
    pub creator_user_id: i64,
    /// `fanfare.fanout.v1.FanoutJobKind`.
    #[prost(int32, tag = "3")]
    pub kind: i32,
    /// What the notification refers to.
    #[prost(string, tag = "4")]
    pub payload_ref: String,
    /// The followers of this page.
    #[prost(int64, repeated, tag = "5")]
    pub follower_user_ids: Vec<i64>,
}

impl NotificationPage {
    /// The key of one follower's notification, the same in the push stream and live:
    /// `<job_id>:<follower_user_id>`.
    pub fn key(job_id: i64, follower_user_id: i64) -> String {
        format!("{job_id}:{follower_user_id}")
    }
}

/// Broadcasts `page` to every fanout pod.
pub async fn publish_page(bus: &dyn UpdateBus, page: &NotificationPage) -> Result<(), BusError> {
    bus.publish(NOTIFICATIONS_CHANNEL, page.encode_to_vec().into()).await
}
