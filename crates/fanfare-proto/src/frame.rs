//! `fanfare.fanout.v1.SubscribeResponse`, written by hand so that an update encoded once can
//! be shared by every stream that carries it.
//!
//! The generated code would hold each update as a `fanfare.common.v1.Update` struct and
//! encode it again for every stream; here [`EncodedUpdates`] holds the already-encoded bytes
//! (a `bytes` field and a message field are the same on the wire), so a frame costs one
//! copy per stream. Clients decode the bytes with [`EncodedUpdates::decode_all`]. The proto
//! file stays the contract: reflection, grpcurl and other languages see the ordinary
//! message, and `build.rs` maps the type here through `extern_path`.

use prost::Message;
use prost::bytes::Bytes;

use crate::common::v1::Update;
use crate::fanout::v1::{GroupResync, Heartbeat, MembershipChange, Notification, Reconnect};

/// One frame of a Subscribe stream (`fanfare.fanout.v1.SubscribeResponse`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct SubscribeResponse {
    /// What the frame carries.
    #[prost(oneof = "Frame", tags = "1, 2, 3, 4, 5, 6")]
    pub frame: Option<Frame>,
}

/// The oneof `frame` of [`SubscribeResponse`].
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Frame {
    /// Updates, in event_seq order per group.
    #[prost(message, tag = "1")]
    Updates(EncodedUpdates),
    /// Where each group of the stream stands.
    #[prost(message, tag = "2")]
    Heartbeat(Heartbeat),
    /// The stream started or stopped carrying a group.
    #[prost(message, tag = "3")]
    MembershipChange(MembershipChange),
    /// A resume position was older than the retained log.
    #[prost(message, tag = "4")]
    Resync(GroupResync),
    /// A fan-out notification.
    #[prost(message, tag = "5")]
    Notification(Notification),
    /// The last frame: reconnect.
    #[prost(message, tag = "6")]
    Reconnect(Reconnect),
}

/// `fanfare.fanout.v1.UpdateBatch` with each update kept as its encoded bytes.
#[derive(Clone, PartialEq, prost::Message)]
pub struct EncodedUpdates {
    /// Encoded `fanfare.common.v1.Update` messages.
    #[prost(bytes = "bytes", repeated, tag = "1")]
    pub updates: Vec<Bytes>,
}

impl EncodedUpdates {
    /// Decodes every update, failing on the first that is not a valid `Update`.
    pub fn decode_all(&self) -> Result<Vec<Update>, prost::DecodeError> {
        self.updates.iter().map(|bytes| Update::decode(bytes.as_ref())).collect()
    }
}

impl From<Vec<Update>> for EncodedUpdates {
    fn from(updates: Vec<Update>) -> Self {
        Self { updates: updates.iter().map(|update| Bytes::from(update.encode_to_vec())).collect() }
    }
}

impl SubscribeResponse {
    /// A frame carrying `frame`.
    pub fn new(frame: Frame) -> Self {
        Self { frame: Some(frame) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fanout::v1::{GroupPosition, UpdateBatch};

    /// The generated `UpdateBatch` and the hand-written [`EncodedUpdates`] are the same bytes.
    #[test]
    fn encoded_updates_are_wire_compatible_with_update_batch() {
        let updates = vec![
            Update { group_id: 7, event_seq: 1, ..Default::default() },
            Update { group_id: 7, event_seq: 2, ..Default::default() },
        ];
        let generated = UpdateBatch { updates: updates.clone() }.encode_to_vec();
        let shared = EncodedUpdates::from(updates.clone());
        assert_eq!(shared.encode_to_vec(), generated);
        let decoded = EncodedUpdates::decode(generated.as_slice()).expect("decodes");
        assert_eq!(decoded.decode_all().expect("valid updates"), updates);
    }

    #[test]
    fn heartbeat_frames_round_trip() {
        let frame = SubscribeResponse::new(Frame::Heartbeat(Heartbeat {
            positions: vec![GroupPosition { group_id: 3, event_seq: 9, entry_token: 5 }],
            cursor: "c".into(),
            sent_at: None,
        }));
        let decoded = SubscribeResponse::decode(frame.encode_to_vec().as_slice()).expect("decodes");
        assert_eq!(decoded, frame);
    }
}
