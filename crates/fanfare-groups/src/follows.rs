//! The follow graph as the groups service needs it: whether a user follows a group's owner,
//! and since when, for `JoinGroup` on FOLLOWERS_ONLY groups. [`FollowGraph`] is the seam the
//! service calls; [`FanoutFollowGraph`] answers it with the fanout service's `CheckFollows`,
//! acting as the joining user and carrying the service token.

use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use fanfare_core::client::{MAX_REQUEST_SIZE, MAX_RESPONSE_SIZE, ServiceTokenInterceptor, lazy_channel};
use fanfare_core::identity::set_acting_user;
use fanfare_core::ids::UserId;
use fanfare_core::time::parse_timestamp;
use fanfare_core::tls::ClientTls;
use fanfare_proto::fanout::v1::CheckFollowsRequest;
use fanfare_proto::fanout::v1::fanout_service_client::FanoutServiceClient;
use metrics::counter;
use tonic::Code;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::metrics::FOLLOW_CHECKS_TOTAL;

/// How long one `CheckFollows` call may take. A join waits for it, so it is kept well below
/// the server's request timeout; the fanout service answers with a primary-key probe.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(3);

/// Why the follow graph could not answer. Either way nobody is let in.
#[derive(Debug, thiserror::Error)]
pub enum FollowGraphError {
    /// The fanout service could not be reached, was overloaded or did not answer in time:
    /// retrying may help.
    #[error("the fanout service is unavailable")]
    Unavailable(#[source] tonic::Status),
    /// The fanout service refused the call or answered something unusable: a bug or a
    /// misconfiguration (e.g. a wrong service token), which retrying does not fix.
    #[error("the fanout service failed a follow check")]
    Failed(#[source] anyhow::Error),
}

impl FollowGraphError {
    /// Sorts a failed call: transport failures, timeouts (tonic reports them as
    /// `CANCELLED`) and overload are worth retrying; anything else is not.
    fn from_status(status: tonic::Status) -> Self {
        match status.code() {
            Code::Unavailable
            | Code::DeadlineExceeded
            | Code::Cancelled
            | Code::ResourceExhausted
            | Code::Aborted
            | Code::Unknown => Self::Unavailable(status),
            Code::Ok
            | Code::InvalidArgument
            | Code::NotFound
            | Code::AlreadyExists
            | Code::PermissionDenied
            | Code::FailedPrecondition
            | Code::OutOfRange
            | Code::Unimplemented
            | Code::Internal
            | Code::DataLoss
            | Code::Unauthenticated => Self::Failed(anyhow::Error::new(status).context("calling CheckFollows")),
        }
    }

    fn outcome(&self) -> &'static str {
        match self {
            Self::Unavailable(_) => "unavailable",
            Self::Failed(_) => "failed",
        }
    }
}

/// Who follows whom.
#[async_trait]
pub trait FollowGraph: Send + Sync + 'static {
    /// Since when `follower` follows `creator`; `None` when they do not.
    async fn followed_since(
        &self,
        follower: UserId,
        creator: UserId,
    ) -> Result<Option<DateTime<Utc>>, FollowGraphError>;
}

type FanoutClient = FanoutServiceClient<InterceptedService<Channel, ServiceTokenInterceptor>>;

/// The follow graph of the fanout service, over gRPC.
#[derive(Debug, Clone)]
pub struct FanoutFollowGraph {
    client: FanoutClient,
}

impl FanoutFollowGraph {
    /// The follow graph of the fanout service at `fanout_url` (connected lazily, reconnecting
    /// as needed, over `tls` for an `https://` URL), called with `service_token` when there is
    /// one.
    pub fn connect(fanout_url: &str, service_token: Option<&str>, tls: &ClientTls) -> anyhow::Result<Self> {
        let interceptor = ServiceTokenInterceptor::new(service_token).context("the service token")?;
        let channel = lazy_channel(fanout_url, Some(CHECK_TIMEOUT), tls)
            .with_context(|| format!("the fanout service URL {fanout_url:?}"))?;
        Ok(Self {
            client: FanoutServiceClient::with_interceptor(channel, interceptor)
                .max_decoding_message_size(MAX_RESPONSE_SIZE)
                .max_encoding_message_size(MAX_REQUEST_SIZE),
        })
    }

    async fn check(&self, follower: UserId, creator: UserId) -> Result<Option<DateTime<Utc>>, FollowGraphError> {
        let mut request = tonic::Request::new(CheckFollowsRequest {
            follower_user_id: follower.get(),
            creator_user_ids: vec![creator.get()],
        });
        // The check is the joining user's own question, asked on their behalf.
        set_acting_user(request.metadata_mut(), follower);
        let response = self.client.clone().check_follows(request).await.map_err(FollowGraphError::from_status)?;
        let unusable = |problem: String| FollowGraphError::Failed(anyhow::Error::msg(problem));
        let check = response
            .into_inner()
            .checks
            .into_iter()
            .find(|check| check.creator_user_id == creator.get())
            .ok_or_else(|| unusable(format!("CheckFollows answered no check of creator {creator}")))?;
        if !check.following {
            return Ok(None);
        }
        let followed_at = check
            .followed_at
            .ok_or_else(|| unusable(format!("CheckFollows answered a follow of creator {creator} without a time")))?;
        let followed_at = parse_timestamp("followed_at", &followed_at)
            .map_err(|violation| unusable(format!("CheckFollows answered a follow time that {violation}")))?;
        Ok(Some(followed_at))
    }
}

#[async_trait]
impl FollowGraph for FanoutFollowGraph {
    async fn followed_since(
        &self,
        follower: UserId,
        creator: UserId,
    ) -> Result<Option<DateTime<Utc>>, FollowGraphError> {
        let answer = self.check(follower, creator).await;
        let outcome = match &answer {
            Ok(Some(_)) => "following",
            Ok(None) => "not_following",
            Err(error) => error.outcome(),
        };
        counter!(FOLLOW_CHECKS_TOTAL, "outcome" => outcome).increment(1);
        answer
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods, reason = "statuses as the fanout service's client sees them")]
mod tests {
    use super::*;

    #[test]
    fn transient_failures_are_unavailable_and_the_rest_failed() {
        for code in [Code::Unavailable, Code::DeadlineExceeded, Code::Cancelled, Code::ResourceExhausted] {
            let sorted = FollowGraphError::from_status(tonic::Status::new(code, "down"));
            assert!(matches!(sorted, FollowGraphError::Unavailable(_)), "{code:?}");
        }
        for code in [Code::Unauthenticated, Code::InvalidArgument, Code::Unimplemented, Code::Internal] {
            let sorted = FollowGraphError::from_status(tonic::Status::new(code, "broken"));
            assert!(matches!(sorted, FollowGraphError::Failed(_)), "{code:?}");
        }
    }

    #[test]
    fn a_bad_url_is_refused_at_start() {
        assert!(FanoutFollowGraph::connect("not a url", None, &ClientTls::default()).is_err());
        assert!(FanoutFollowGraph::connect("http://fanout:50053", Some("bad\ntoken"), &ClientTls::default()).is_err());
    }
}
