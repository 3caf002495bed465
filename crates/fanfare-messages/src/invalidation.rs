//! Membership invalidation across messages pods. The pod that appends a relayed membership
//! or settings change drops its own cached entries at once; it also publishes the change on
//! a bus channel every messages pod listens to, so theirs go too. If that publish is lost,
//! or a pod's subscription has a gap, the pod clears its whole cache; the cache TTL bounds
//! what is left.

use std::sync::Arc;

use bytes::Bytes;
use fanfare_bus::{BusEvent, UpdateBus};
use fanfare_proto::common::v1 as common;
use prost::Message as _;
use tokio_util::sync::CancellationToken;

use crate::directory::{Directory, invalidate_for};

/// The channel membership invalidations travel on.
pub const DIRECTORY_CHANNEL: &str = "fanfare:messages:directory";

/// Tells every messages pod to drop what `event` makes stale. Best effort.
pub async fn announce(bus: &dyn UpdateBus, event: &common::GroupEvent) {
    if let Err(error) = bus.publish(DIRECTORY_CHANNEL, Bytes::from(event.encode_to_vec())).await {
        tracing::warn!(error = ?error, "membership invalidation not published; other pods rely on their cache ttl");
    }
}

/// Applies invalidations announced by any pod until `shutdown`.
pub async fn listen(bus: Arc<dyn UpdateBus>, directory: Arc<dyn Directory>, shutdown: CancellationToken) {
    let mut subscriber = loop {
        match bus.subscriber().await {
            Ok(subscriber) => break subscriber,
            Err(error) => {
                tracing::warn!(error = ?error, "cannot subscribe to membership invalidations; retrying");
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
                }
            }
        }
    };
    if let Err(error) = subscriber.subscribe(DIRECTORY_CHANNEL).await {
        tracing::warn!(error = ?error, "subscribing to membership invalidations failed; relying on the cache ttl");
    }
    loop {
        let event = tokio::select! {
            () = shutdown.cancelled() => return,
            event = subscriber.recv() => event,
        };
        match event {
            Some(BusEvent::Message { payload, .. }) => match common::GroupEvent::decode(payload.as_ref()) {
                Ok(group_event) => invalidate_for(directory.as_ref(), &group_event),
                Err(error) => tracing::warn!(%error, "undecodable membership invalidation"),
            },
            // Invalidations may have been missed: forget everything.
            Some(BusEvent::Gap { .. }) => directory.clear(),
            Some(BusEvent::Resumed) => directory.clear(),
            None => return,
        }
    }
}
