//! The gRPC adapter of `fanfare.messages.v1.MessageService`: per call, read the acting user,
//! parse the request, call [`MessagesService`], map the result. No rules, no storage here.

mod parse;
#[cfg(test)]
mod parse_proptest;

use std::sync::Arc;

use fanfare_core::callers::Caller;
use fanfare_core::identity::acting_user;
use fanfare_core::ids::{EventSeq, MessageSeq, UserId};
use fanfare_core::server::{MAX_DECODING_MESSAGE_SIZE, MAX_ENCODING_MESSAGE_SIZE};
use fanfare_proto::common::v1 as common;
use fanfare_proto::messages::v1 as pb;
use fanfare_proto::messages::v1::message_service_server::MessageService;
use prost::Message as _;
use tonic::{Request, Response, Status};

use crate::domain::updates::{message_to_proto, reactions_to_proto};
use crate::domain::{LogPosition, PinChange, ReactionChange, ResyncReason, StoredUpdate};
use crate::error::MessagesError;
use crate::service::{MessagesService, UpdatesAnswer};

/// The source of events relayed by the built-in caller (no callers file): the groups service.
pub const GROUPS_SOURCE: &str = "groups";

/// The tonic service over a [`MessagesService`].
#[derive(Clone)]
pub struct MessagesGrpc {
    service: Arc<MessagesService>,
}

impl MessagesGrpc {
    /// Wraps the service.
    pub fn new(service: Arc<MessagesService>) -> Self {
        Self { service }
    }

    /// The generated tonic server for this adapter, with the message size limits of
    /// `fanfare_core::server`.
    pub fn into_server(self) -> pb::message_service_server::MessageServiceServer<Self> {
        pb::message_service_server::MessageServiceServer::new(self)
            .max_decoding_message_size(MAX_DECODING_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_ENCODING_MESSAGE_SIZE)
    }
}

type GrpcResult<T> = Result<Response<T>, Status>;

fn actor<T>(request: &Request<T>) -> Result<UserId, Status> {
    Ok(acting_user(request.metadata())?)
}

fn invalid(error: fanfare_core::validation::InvalidRequest) -> Status {
    MessagesError::from(error).into()
}

/// Decodes stored log entries; a corrupt one is an internal error, never skipped silently.
fn decode_updates(updates: &[StoredUpdate]) -> Result<Vec<common::Update>, Status> {
    updates
        .iter()
        .map(|stored| {
            common::Update::decode(stored.payload.as_ref()).map_err(|error| {
                tracing::error!(%error, group_id = %stored.group_id, event_seq = stored.event_seq.get(), "corrupt update");
                fanfare_core::status::internal()
            })
        })
        .collect()
}

fn resync(position: &LogPosition, reason: ResyncReason) -> pb::ResyncRequired {
    let (why, reason) = match reason {
        ResyncReason::PastRetention => {
            ("the requested position is older than the retained update log", common::ResyncReason::PastRetention)
        }
        ResyncReason::LogWentBack => (
            "the requested position is past the end of the update log, which went back (a restore or a failover)",
            common::ResyncReason::LogWentBack,
        ),
        ResyncReason::LogReissued => (
            "the update log holds another entry at the requested position than after_entry_token names: it went \
             back (a restore or a failover) and issued the position again",
            common::ResyncReason::LogReissued,
        ),
    };
    pb::ResyncRequired {
        latest_event_seq: position.last_event_seq.get(),
        oldest_retained_event_seq: position.oldest_retained_event_seq.get(),
        instructions: format!(
            "{why}: reload the group's history with ListMessages, then resume GetUpdates or Subscribe from \
             latest_event_seq and latest_entry_token"
        ),
        reason: reason.into(),
        latest_entry_token: position.last_entry_token,
    }
}

#[tonic::async_trait]
impl MessageService for MessagesGrpc {
    async fn send_message(&self, request: Request<pb::SendMessageRequest>) -> GrpcResult<pb::SendMessageResponse> {
        let actor = actor(&request)?;
        let send = parse::send_message(request.get_ref(), self.service.limits()).map_err(invalid)?;
        let (message, duplicate) = self.service.send_message(actor, send).await?;
        Ok(Response::new(pb::SendMessageResponse { message: Some(message_to_proto(&message)), duplicate }))
    }

    async fn edit_message(&self, request: Request<pb::EditMessageRequest>) -> GrpcResult<pb::EditMessageResponse> {
        let actor = actor(&request)?;
        let edit = parse::edit_message(request.get_ref(), self.service.limits()).map_err(invalid)?;
        let message = self.service.edit_message(actor, edit.group, edit.message_seq, edit.text).await?;
        Ok(Response::new(pb::EditMessageResponse { message: Some(message_to_proto(&message)) }))
    }

    async fn delete_message(
        &self,
        request: Request<pb::DeleteMessageRequest>,
    ) -> GrpcResult<pb::DeleteMessageResponse> {
        let actor = actor(&request)?;
        let target = parse::message_ref(request.get_ref().group_id, request.get_ref().message_seq).map_err(invalid)?;
        let message = self.service.delete_message(actor, target.group, target.message_seq).await?;
        Ok(Response::new(pb::DeleteMessageResponse { message: Some(message_to_proto(&message)) }))
    }

    async fn purge_user_messages(
        &self,
        request: Request<pb::PurgeUserMessagesRequest>,
    ) -> GrpcResult<pb::PurgeUserMessagesResponse> {
        let actor = actor(&request)?;
        let purge = parse::purge(request.get_ref()).map_err(invalid)?;
        let (purged_count, event_seq) =
            self.service.purge_user_messages(actor, purge.group, purge.user, purge.since).await?;
        Ok(Response::new(pb::PurgeUserMessagesResponse { purged_count, event_seq: event_seq.map_or(0, EventSeq::get) }))
    }

    async fn add_reaction(&self, request: Request<pb::AddReactionRequest>) -> GrpcResult<pb::AddReactionResponse> {
        let actor = actor(&request)?;
        let body = request.get_ref();
        let reaction = parse::reaction(body.group_id, body.message_seq, &body.emoji).map_err(invalid)?;
        let totals = self
            .service
            .react(actor, reaction.group, reaction.message_seq, reaction.emoji, ReactionChange::Add)
            .await?;
        Ok(Response::new(pb::AddReactionResponse { reactions: reactions_to_proto(&totals) }))
    }

    async fn remove_reaction(
        &self,
        request: Request<pb::RemoveReactionRequest>,
    ) -> GrpcResult<pb::RemoveReactionResponse> {
        let actor = actor(&request)?;
        let body = request.get_ref();
        let reaction = parse::reaction(body.group_id, body.message_seq, &body.emoji).map_err(invalid)?;
        let totals = self
            .service
            .react(actor, reaction.group, reaction.message_seq, reaction.emoji, ReactionChange::Remove)
            .await?;
        Ok(Response::new(pb::RemoveReactionResponse { reactions: reactions_to_proto(&totals) }))
    }

    async fn pin_message(&self, request: Request<pb::PinMessageRequest>) -> GrpcResult<pb::PinMessageResponse> {
        let actor = actor(&request)?;
        let target = parse::message_ref(request.get_ref().group_id, request.get_ref().message_seq).map_err(invalid)?;
        self.service.pin(actor, target.group, target.message_seq, PinChange::Pin).await?;
        Ok(Response::new(pb::PinMessageResponse {}))
    }

    async fn unpin_message(&self, request: Request<pb::UnpinMessageRequest>) -> GrpcResult<pb::UnpinMessageResponse> {
        let actor = actor(&request)?;
        let target = parse::message_ref(request.get_ref().group_id, request.get_ref().message_seq).map_err(invalid)?;
        self.service.pin(actor, target.group, target.message_seq, PinChange::Unpin).await?;
        Ok(Response::new(pb::UnpinMessageResponse {}))
    }

    async fn list_messages(&self, request: Request<pb::ListMessagesRequest>) -> GrpcResult<pb::ListMessagesResponse> {
        let actor = actor(&request)?;
        let list = parse::list_messages(request.get_ref()).map_err(invalid)?;
        let page = self.service.list_messages(actor, list.group, list.direction, list.start, list.size).await?;
        Ok(Response::new(pb::ListMessagesResponse {
            messages: page.items.iter().map(message_to_proto).collect(),
            next_page_token: page.next_page_token(),
        }))
    }

    async fn get_messages(&self, request: Request<pb::GetMessagesRequest>) -> GrpcResult<pb::GetMessagesResponse> {
        let actor = actor(&request)?;
        let get = parse::get_messages(request.get_ref()).map_err(invalid)?;
        let (found, missing_ids, missing_seqs) =
            self.service.get_messages(actor, get.group, &get.ids, &get.seqs).await?;
        Ok(Response::new(pb::GetMessagesResponse {
            messages: found.iter().map(message_to_proto).collect(),
            missing_message_ids: missing_ids.iter().map(ToString::to_string).collect(),
            missing_message_seqs: missing_seqs.into_iter().map(MessageSeq::get).collect(),
        }))
    }

    async fn get_updates(&self, request: Request<pb::GetUpdatesRequest>) -> GrpcResult<pb::GetUpdatesResponse> {
        let actor = actor(&request)?;
        let read = parse::get_updates(request.get_ref()).map_err(invalid)?;
        let result = match self.service.get_updates(actor, read.group, read.after, read.size).await? {
            UpdatesAnswer::Page { updates, position, has_more } => {
                pb::get_updates_response::Result::Page(pb::UpdatesPage {
                    updates: decode_updates(&updates)?,
                    latest_event_seq: position.last_event_seq.get(),
                    has_more,
                    latest_entry_token: position.last_entry_token,
                })
            }
            UpdatesAnswer::ResyncRequired(position, reason) => {
                pb::get_updates_response::Result::ResyncRequired(resync(&position, reason))
            }
        };
        Ok(Response::new(pb::GetUpdatesResponse { result: Some(result) }))
    }

    async fn mark_read(&self, request: Request<pb::MarkReadRequest>) -> GrpcResult<pb::MarkReadResponse> {
        let actor = actor(&request)?;
        let target = parse::message_ref(request.get_ref().group_id, request.get_ref().message_seq).map_err(invalid)?;
        let read_message_seq = self.service.mark_read(actor, target.group, target.message_seq).await?;
        Ok(Response::new(pb::MarkReadResponse { read_message_seq: read_message_seq.get() }))
    }

    async fn get_unread_counts(
        &self,
        request: Request<pb::GetUnreadCountsRequest>,
    ) -> GrpcResult<pb::GetUnreadCountsResponse> {
        let actor = actor(&request)?;
        let groups = parse::unread_groups(request.get_ref()).map_err(invalid)?;
        let counts = self.service.unread_counts(actor, &groups).await?;
        Ok(Response::new(pb::GetUnreadCountsResponse {
            counts: counts
                .iter()
                .map(|unread| pb::UnreadCount {
                    group_id: unread.group_id.get(),
                    unread_messages: unread.unread_messages,
                    unread_mentions: unread.unread_mentions,
                    last_message_seq: unread.last_message_seq.get(),
                    read_message_seq: unread.read_message_seq.get(),
                })
                .collect(),
        }))
    }

    async fn append_system_updates(
        &self,
        request: Request<pb::AppendSystemUpdatesRequest>,
    ) -> GrpcResult<pb::AppendSystemUpdatesResponse> {
        let events = parse::system_events(request.get_ref()).map_err(invalid)?;
        // Named callers relay under their own name. Without a callers file every caller is
        // the one built-in caller and, as only the groups service relays, its events are
        // recorded as the groups service's.
        let source = Caller::of(&request).filter(|caller| caller.is_named()).map_or(GROUPS_SOURCE, Caller::name);
        let appended = self.service.append_system_updates(source, events).await?;
        Ok(Response::new(pb::AppendSystemUpdatesResponse {
            appended: appended
                .into_iter()
                .map(|(outbox_id, group, event_seq)| pb::AppendedEvent {
                    outbox_id,
                    group_id: group.get(),
                    event_seq: event_seq.get(),
                })
                .collect(),
        }))
    }
}
