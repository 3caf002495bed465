//! The outbox relay: delivers every `groups.outbox` row to the messages service's update log
//! (`AppendSystemUpdates`), then marks it published.
//!
//! Each pass claims a batch of rows under a lease, sends them in id order, and marks them
//! published once the messages service has appended them. A pass that fails (the messages
//! service is down, the store is unreachable) leaves its rows claimed; when the lease runs out
//! they are claimed again, by this relay or another pod's, and sent again. The messages service
//! appends each outbox id once and answers a repeat with the original event_seq, so a row sent
//! twice still lands in the log exactly once. While a row's claim is live, the store hands out
//! no other row of its group, so a group's rows never overtake each other.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use fanfare_core::client::{MAX_REQUEST_SIZE, MAX_RESPONSE_SIZE, ServiceTokenInterceptor, lazy_channel};
use fanfare_core::tls::ClientTls;
use fanfare_proto::common::v1::GroupEvent;
use fanfare_proto::messages::v1::message_service_client::MessageServiceClient;
use fanfare_proto::messages::v1::{AppendSystemUpdatesRequest, SystemEvent};
use metrics::{counter, gauge};
use prost::Message as _;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tonic::Code;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::domain::OutboxEntry;
use crate::metrics::{OUTBOX_CORRUPT_TOTAL, OUTBOX_LAG_SECONDS, OUTBOX_RELAYED_TOTAL};
use crate::store::{GroupStore, StoreError};

/// Most rows claimed and sent per pass (the most `AppendSystemUpdates` accepts).
pub const CLAIM_BATCH: u32 = 500;
/// How long a claim keeps other passes off a batch; a failed batch is sent again after it.
pub const CLAIM_LEASE: Duration = Duration::from_secs(10);
/// How often an idle relay looks for rows it was not woken for.
pub const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// How long one `AppendSystemUpdates` call may take: well inside the lease, so a batch is
/// rarely sent by two relays at once.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// The wait after a first failed pass; it doubles with each further failure.
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(250);
/// The longest wait between failed passes: by then the failed batch is claimable again.
const MAX_RETRY_DELAY: Duration = CLAIM_LEASE;

/// What one relay pass did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayOutcome {
    /// Nothing was claimable.
    Idle,
    /// This many rows were appended and marked published (0 when the batch held only
    /// corrupt rows); more may be waiting.
    Relayed(usize),
    /// The pass failed; its rows stay claimed until the lease expires.
    Failed,
}

type MessagesClient = MessageServiceClient<InterceptedService<Channel, ServiceTokenInterceptor>>;

/// Why a pass failed.
#[derive(Debug, thiserror::Error)]
enum PassError {
    #[error("{during}")]
    Store {
        during: &'static str,
        #[source]
        source: StoreError,
    },
    #[error("the messages service did not append the batch: {0}")]
    Messages(tonic::Status),
    #[error("the messages service answered {answered} appended events for {sent} sent")]
    Unanswered { sent: usize, answered: usize },
}

impl PassError {
    fn store(during: &'static str) -> impl FnOnce(StoreError) -> Self {
        move |source| Self::Store { during, source }
    }

    /// Whether retrying cannot help until someone changes code or configuration.
    fn needs_a_human(&self) -> bool {
        match self {
            Self::Messages(status) => matches!(
                status.code(),
                Code::InvalidArgument | Code::Unauthenticated | Code::PermissionDenied | Code::Unimplemented
            ),
            Self::Unanswered { .. } => true,
            Self::Store { .. } => false,
        }
    }
}

/// Relays the groups outbox to the messages service's update log.
pub struct OutboxRelay {
    store: Arc<dyn GroupStore>,
    client: MessagesClient,
    wake: Arc<Notify>,
}

impl OutboxRelay {
    /// A relay from `store`'s outbox to the messages service at `messages_url` (connected
    /// lazily, reconnecting as needed, over `tls` for an `https://` URL), calling with
    /// `service_token` when there is one.
    pub fn connect(
        store: Arc<dyn GroupStore>,
        messages_url: &str,
        service_token: Option<&str>,
        tls: &ClientTls,
    ) -> anyhow::Result<Self> {
        let interceptor = ServiceTokenInterceptor::new(service_token)?;
        let channel = lazy_channel(messages_url, Some(CALL_TIMEOUT), tls)?;
        Ok(Self {
            store,
            client: MessageServiceClient::with_interceptor(channel, interceptor)
                .max_decoding_message_size(MAX_RESPONSE_SIZE)
                .max_encoding_message_size(MAX_REQUEST_SIZE),
            wake: Arc::new(Notify::new()),
        })
    }

    /// A handle to wake an idle relay at once (`notify_one`) instead of at its next poll,
    /// e.g. after a change commits.
    pub fn waker(&self) -> Arc<Notify> {
        Arc::clone(&self.wake)
    }

    /// One pass at the current time.
    pub async fn run_once(&self) -> RelayOutcome {
        self.run_once_at(Utc::now()).await
    }

    /// One pass as if the time were `now` (claims and their leases are measured from it):
    /// claim a batch, set aside corrupt rows, append the rest in id order, mark them published.
    pub async fn run_once_at(&self, now: DateTime<Utc>) -> RelayOutcome {
        match self.pass(now).await {
            Ok(outcome) => outcome,
            Err(error) if error.needs_a_human() => {
                tracing::error!(error = %format_args!("{error:#}"), "outbox relay pass failed; will retry");
                RelayOutcome::Failed
            }
            Err(error) => {
                tracing::warn!(error = %format_args!("{error:#}"), "outbox relay pass failed; will retry");
                RelayOutcome::Failed
            }
        }
    }

    /// Passes until `shutdown`: again at once while rows keep coming, every
    /// [`POLL_INTERVAL`] (or when woken) while idle, backing off after failures.
    pub async fn run(self, shutdown: CancellationToken) {
        tracing::info!("outbox relay started");
        let mut retry_delay = FIRST_RETRY_DELAY;
        loop {
            // An interrupted pass leaves its rows claimed; the lease brings them back.
            let outcome = tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                outcome = self.run_once() => outcome,
            };
            let wait = match outcome {
                RelayOutcome::Relayed(_) => {
                    retry_delay = FIRST_RETRY_DELAY;
                    Duration::ZERO
                }
                RelayOutcome::Idle => {
                    retry_delay = FIRST_RETRY_DELAY;
                    POLL_INTERVAL
                }
                RelayOutcome::Failed => {
                    let wait = retry_delay;
                    retry_delay = (retry_delay * 2).min(MAX_RETRY_DELAY);
                    wait
                }
            };
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                () = self.wake.notified(), if outcome == RelayOutcome::Idle => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
        tracing::info!("outbox relay stopped");
    }

    async fn pass(&self, now: DateTime<Utc>) -> Result<RelayOutcome, PassError> {
        let oldest = self.store.oldest_unpublished().await.map_err(PassError::store("reading the outbox lag"))?;
        // A row stamped after `now` (clock skew between pods) counts as no lag.
        let lag = oldest.and_then(|written| (now - written).to_std().ok()).unwrap_or_default();
        gauge!(OUTBOX_LAG_SECONDS).set(lag.as_secs_f64());

        let claimed = self
            .store
            .claim_outbox(CLAIM_BATCH, CLAIM_LEASE, now)
            .await
            .map_err(PassError::store("claiming outbox rows"))?;
        if claimed.is_empty() {
            return Ok(RelayOutcome::Idle);
        }

        let mut events = Vec::with_capacity(claimed.len());
        let mut corrupt = Vec::new();
        for entry in &claimed {
            match system_event(entry) {
                Ok(event) => events.push(event),
                Err(reason) => {
                    tracing::error!(
                        outbox_id = entry.id,
                        group_id = %entry.group_id,
                        reason,
                        "corrupt outbox row; skipping it for good"
                    );
                    corrupt.push(entry.id);
                }
            }
        }
        if !corrupt.is_empty() {
            // Published without being sent, so that it cannot hold up the queue forever.
            self.store
                .mark_published(&corrupt, now)
                .await
                .map_err(PassError::store("setting corrupt outbox rows aside"))?;
            counter!(OUTBOX_CORRUPT_TOTAL).increment(corrupt.len() as u64);
        }
        if events.is_empty() {
            return Ok(RelayOutcome::Relayed(0));
        }

        let sent: Vec<i64> = events.iter().map(|event| event.outbox_id).collect();
        let request = AppendSystemUpdatesRequest { events };
        let response = self.client.clone().append_system_updates(request).await.map_err(PassError::Messages)?;
        let answered = response.into_inner().appended.len();
        if answered != sent.len() {
            return Err(PassError::Unanswered { sent: sent.len(), answered });
        }
        self.store
            .mark_published(&sent, now)
            .await
            .map_err(PassError::store("marking relayed outbox rows published"))?;
        counter!(OUTBOX_RELAYED_TOTAL).increment(sent.len() as u64);
        tracing::debug!(relayed = sent.len(), "relayed outbox rows");
        Ok(RelayOutcome::Relayed(sent.len()))
    }
}

/// The event an outbox row carries, or why it is not one the messages service would accept.
fn system_event(entry: &OutboxEntry) -> Result<SystemEvent, String> {
    let event =
        GroupEvent::decode(entry.payload.as_slice()).map_err(|error| format!("undecodable payload: {error}"))?;
    if event.group_id != entry.group_id.get() {
        return Err(format!("the payload names group {}", event.group_id));
    }
    if event.change.is_none() {
        // Also what a change kind added by a newer version looks like to this one: new kinds
        // must be deployed to every groups pod before any pod writes them.
        return Err("the payload carries no change".to_owned());
    }
    Ok(SystemEvent { outbox_id: entry.id, event: Some(event) })
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use fanfare_core::ids::{GroupId, UserId};

    use super::*;
    use crate::domain::GroupChange;

    fn entry(group: i64, payload: Vec<u8>) -> OutboxEntry {
        OutboxEntry { id: 7, group_id: GroupId::from_trusted(group), payload }
    }

    #[test]
    fn a_stored_change_becomes_a_system_event() {
        let group = GroupId::from_trusted(3);
        let payload = GroupChange::Left { user: UserId::from_trusted(9) }.encode(group, None, Utc::now());
        let event = system_event(&entry(3, payload)).expect("a valid row");
        assert_eq!(event.outbox_id, 7);
        assert_eq!(event.event.map(|event| event.group_id), Some(3));
    }

    #[test]
    fn corrupt_rows_are_recognised() {
        assert!(system_event(&entry(3, vec![0xff, 0xff, 0xff])).is_err(), "garbage");
        assert!(system_event(&entry(3, Vec::new())).is_err(), "an empty payload decodes to no change");
        let payload = GroupChange::Archived.encode(GroupId::from_trusted(4), None, Utc::now());
        assert!(system_event(&entry(3, payload)).is_err(), "another group's event");
    }

    #[test]
    fn the_token_interceptor_adds_a_bearer_header() {
        use tonic::service::Interceptor as _;

        let mut with_token = ServiceTokenInterceptor::new(Some("secret")).expect("an ascii token");
        let request = with_token.call(tonic::Request::new(())).expect("intercepted");
        assert_eq!(request.metadata().get("authorization").and_then(|v| v.to_str().ok()), Some("Bearer secret"));
        let mut without = ServiceTokenInterceptor::new(None).expect("no token");
        let request = without.call(tonic::Request::new(())).expect("intercepted");
        assert!(request.metadata().get("authorization").is_none());
        assert!(ServiceTokenInterceptor::new(Some("bad\ntoken")).is_err());
    }
}
