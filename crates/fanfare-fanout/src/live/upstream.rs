//! The calls live delivery makes to the other services, always as the stream's user: the
//! groups service for the user's groups, the messages service for the update log. Their
//! statuses come back as [`FanoutError::Upstream`], passed on as they came.

use std::time::Duration;

use fanfare_core::client::{MAX_REQUEST_SIZE, MAX_RESPONSE_SIZE, ServiceTokenInterceptor, lazy_channel};
use fanfare_core::identity::USER_ID_HEADER;
use fanfare_core::ids::{EventSeq, GroupId, UserId};
use fanfare_core::time::timestamp_micros;
use fanfare_core::tls::ClientTls;
use fanfare_proto::common::v1::GroupKind;
use fanfare_proto::groups::v1::group_service_client::GroupServiceClient;
use fanfare_proto::groups::v1::{GetGroupRequest, GetMembershipRequest, Group, ListUserGroupsRequest, Membership};
use fanfare_proto::messages::v1::message_service_client::MessageServiceClient;
use fanfare_proto::messages::v1::{GetUpdatesRequest, get_updates_response};
use fanfare_proto::visibility::{self, Standing};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use super::cursor::Position;
use crate::config::LiveConfig;
use crate::error::{FanoutError, FanoutResult};

/// How long one call to another service may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Groups read per ListUserGroups call.
const GROUPS_PAGE_SIZE: i32 = 1_000;

type GroupsClient = GroupServiceClient<InterceptedService<Channel, ServiceTokenInterceptor>>;
type MessagesClient = MessageServiceClient<InterceptedService<Channel, ServiceTokenInterceptor>>;

/// Clients of the groups and messages services.
#[derive(Clone)]
pub(crate) struct Upstream {
    groups: GroupsClient,
    messages: MessagesClient,
}

/// What decides what of a group's log a member sees whole, by the rules the messages
/// service applies to `GetUpdates` (`fanfare_proto::visibility`), with times in µs since the
/// epoch.
pub(crate) type Access = Standing<i64>;

/// The standing `membership` (none: not a member) gives in `group`. Without a membership
/// the join is at the end of time: the member is shown no history from before it.
fn access(membership: Option<&Membership>, group: Option<&Group>) -> Access {
    let history_visible_to_new_members =
        group.and_then(|group| group.settings.as_ref()).is_some_and(|settings| settings.history_visible_to_new_members);
    let broadcast = group.is_some_and(|group| group.kind() == GroupKind::Broadcast);
    let joined_at = membership.and_then(|membership| membership.joined_at.as_ref()).map_or(i64::MAX, timestamp_micros);
    let moderates = membership.is_some_and(|membership| visibility::moderates(membership.role()));
    Standing { joined_at, moderates, history_visible_to_new_members, broadcast }
}

/// A request acting as `user`.
fn as_user<T>(user: UserId, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(USER_ID_HEADER, user.get().into());
    request
}

impl Upstream {
    /// Clients of the services `config` names, connected lazily (over `tls` for `https://`
    /// URLs).
    pub(crate) fn connect(config: &LiveConfig, service_token: Option<&str>, tls: &ClientTls) -> anyhow::Result<Self> {
        let interceptor = ServiceTokenInterceptor::new(service_token)?;
        let groups = lazy_channel(&config.groups_url, Some(CALL_TIMEOUT), tls)?;
        let messages = lazy_channel(&config.messages_url, Some(CALL_TIMEOUT), tls)?;
        Ok(Self {
            groups: GroupServiceClient::with_interceptor(groups, interceptor.clone())
                .max_decoding_message_size(MAX_RESPONSE_SIZE)
                .max_encoding_message_size(MAX_REQUEST_SIZE),
            messages: MessageServiceClient::with_interceptor(messages, interceptor)
                .max_decoding_message_size(MAX_RESPONSE_SIZE)
                .max_encoding_message_size(MAX_REQUEST_SIZE),
        })
    }

    /// Every group `user` belongs to, with what decides whether they see its history, up to
    /// `max` (more is an error the caller reports).
    pub(crate) async fn user_groups(&self, user: UserId, max: usize) -> FanoutResult<Vec<(GroupId, Access)>> {
        let mut groups = Vec::new();
        let mut page_token = String::new();
        loop {
            let request = ListUserGroupsRequest { page_size: GROUPS_PAGE_SIZE, page_token };
            let page = self
                .groups
                .clone()
                .list_user_groups(as_user(user, request))
                .await
                .map_err(FanoutError::Upstream)?
                .into_inner();
            groups.extend(page.groups.iter().filter_map(|entry| {
                let group = entry.group.as_ref()?;
                // The groups service lists its own groups' ids.
                Some((GroupId::from_trusted(group.group_id), access(entry.membership.as_ref(), Some(group))))
            }));
            if groups.len() > max {
                return Err(FanoutError::TooManyGroups { user, max });
            }
            if page.next_page_token.is_empty() {
                return Ok(groups);
            }
            page_token = page.next_page_token;
        }
    }

    /// What decides whether `user` sees `group`'s history (they just joined it).
    pub(crate) async fn access(&self, user: UserId, group: GroupId) -> FanoutResult<Access> {
        let request = GetGroupRequest { group_id: group.get() };
        let group_info = self
            .groups
            .clone()
            .get_group(as_user(user, request))
            .await
            .map_err(FanoutError::Upstream)?
            .into_inner()
            .group;
        let request = GetMembershipRequest { group_id: group.get(), user_id: user.get() };
        let membership = self
            .groups
            .clone()
            .get_membership(as_user(user, request))
            .await
            .map_err(FanoutError::Upstream)?
            .into_inner()
            .membership;
        Ok(access(membership.as_ref(), group_info.as_ref()))
    }

    /// One page of `group`'s update log after `after`, read as `user` (a resync when the log
    /// no longer holds `after`'s entry).
    pub(crate) async fn updates(
        &self,
        user: UserId,
        group: GroupId,
        after: Position,
        page_size: i32,
    ) -> FanoutResult<get_updates_response::Result> {
        let request = GetUpdatesRequest {
            group_id: group.get(),
            after_event_seq: after.event_seq.get(),
            page_size,
            after_entry_token: after.entry_token,
        };
        let response = self
            .messages
            .clone()
            .get_updates(as_user(user, request))
            .await
            .map_err(FanoutError::Upstream)?
            .into_inner();
        response.result.ok_or(FanoutError::EmptyUpdates)
    }

    /// The latest update of `group` (its event_seq and entry token), read as `user`.
    pub(crate) async fn latest(&self, user: UserId, group: GroupId) -> FanoutResult<Position> {
        // Past any update: the page is empty but names the latest.
        let past_the_end = Position::at(EventSeq::from_trusted(i64::MAX));
        let (event_seq, entry_token) = match self.updates(user, group, past_the_end, 1).await? {
            get_updates_response::Result::Page(page) => (page.latest_event_seq, page.latest_entry_token),
            get_updates_response::Result::ResyncRequired(resync) => {
                (resync.latest_event_seq, resync.latest_entry_token)
            }
        };
        Ok(Position { event_seq: EventSeq::from_trusted(event_seq), entry_token })
    }
}
