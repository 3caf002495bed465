//! The gRPC adapter of `fanfare.groups.v1.GroupService`: per call, read the acting user
//! from metadata, parse the request into validated values, call [`GroupsService`], and map
//! the result. No rules and no storage here.

mod convert;
mod parse;
#[cfg(test)]
mod parse_proptest;

use std::sync::Arc;

use chrono::Utc;
use fanfare_core::identity::acting_user;
use fanfare_core::ids::UserId;
use fanfare_core::server::{MAX_DECODING_MESSAGE_SIZE, MAX_ENCODING_MESSAGE_SIZE};
use fanfare_proto::groups::v1 as pb;
use fanfare_proto::groups::v1::group_service_server::GroupService;
use tonic::{Request, Response, Status};

use crate::domain::Membership;
use crate::error::GroupsError;
use crate::service::{GroupsService, JoinResult};
use crate::store::Redemption;

/// The tonic service over a [`GroupsService`].
#[derive(Clone)]
pub struct GroupsGrpc {
    service: Arc<GroupsService>,
}

impl GroupsGrpc {
    /// Wraps the service.
    pub fn new(service: Arc<GroupsService>) -> Self {
        Self { service }
    }

    /// The generated tonic server for this adapter, with the message size limits of
    /// `fanfare_core::server`.
    pub fn into_server(self) -> pb::group_service_server::GroupServiceServer<Self> {
        pb::group_service_server::GroupServiceServer::new(self)
            .max_decoding_message_size(MAX_DECODING_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_ENCODING_MESSAGE_SIZE)
    }

    fn group(&self, group: &crate::domain::Group) -> pb::Group {
        convert::group(group, self.service.member_limit(group.kind))
    }
}

type GrpcResult<T> = Result<Response<T>, Status>;

/// The acting user of a request.
fn actor<T>(request: &Request<T>) -> Result<UserId, Status> {
    Ok(acting_user(request.metadata())?)
}

fn invalid(error: fanfare_core::validation::InvalidRequest) -> Status {
    GroupsError::from(error).into()
}

fn membership(membership: &Membership) -> pb::Membership {
    convert::membership(membership, fanfare_core::time::now())
}

#[tonic::async_trait]
impl GroupService for GroupsGrpc {
    async fn create_group(&self, request: Request<pb::CreateGroupRequest>) -> GrpcResult<pb::CreateGroupResponse> {
        let actor = actor(&request)?;
        let create = parse::create_group(request.get_ref()).map_err(invalid)?;
        let group = self.service.create_group(actor, create).await?;
        Ok(Response::new(pb::CreateGroupResponse { group: Some(self.group(&group)) }))
    }

    async fn get_group(&self, request: Request<pb::GetGroupRequest>) -> GrpcResult<pb::GetGroupResponse> {
        let actor = actor(&request)?;
        let group_id = parse::group_id(request.get_ref().group_id).map_err(invalid)?;
        let group = self.service.get_group(actor, group_id).await?;
        Ok(Response::new(pb::GetGroupResponse { group: Some(self.group(&group)) }))
    }

    async fn batch_get_groups(
        &self,
        request: Request<pb::BatchGetGroupsRequest>,
    ) -> GrpcResult<pb::BatchGetGroupsResponse> {
        let actor = actor(&request)?;
        let ids = parse::batch_get_groups(request.get_ref(), self.service.max_batch_size()).map_err(invalid)?;
        let (groups, missing) = self.service.batch_get_groups(actor, &ids).await?;
        Ok(Response::new(pb::BatchGetGroupsResponse {
            groups: groups.iter().map(|group| self.group(group)).collect(),
            missing_group_ids: missing.iter().map(|id| id.get()).collect(),
        }))
    }

    async fn update_group_settings(
        &self,
        request: Request<pb::UpdateGroupSettingsRequest>,
    ) -> GrpcResult<pb::UpdateGroupSettingsResponse> {
        let actor = actor(&request)?;
        let parse::UpdateSettings { group_id, update } = parse::update_settings(request.get_ref()).map_err(invalid)?;
        let group = self.service.update_settings(actor, group_id, update).await?;
        Ok(Response::new(pb::UpdateGroupSettingsResponse { group: Some(self.group(&group)) }))
    }

    async fn archive_group(&self, request: Request<pb::ArchiveGroupRequest>) -> GrpcResult<pb::ArchiveGroupResponse> {
        let actor = actor(&request)?;
        let group_id = parse::group_id(request.get_ref().group_id).map_err(invalid)?;
        let group = self.service.archive_group(actor, group_id).await?;
        Ok(Response::new(pb::ArchiveGroupResponse { group: Some(self.group(&group)) }))
    }

    async fn join_group(&self, request: Request<pb::JoinGroupRequest>) -> GrpcResult<pb::JoinGroupResponse> {
        let actor = actor(&request)?;
        let group_id = parse::group_id(request.get_ref().group_id).map_err(invalid)?;
        let (outcome, joined) = match self.service.join_group(actor, group_id).await? {
            JoinResult::Joined(joined) => (pb::JoinOutcome::Joined, Some(membership(&joined))),
            JoinResult::AlreadyMember(existing) => (pb::JoinOutcome::AlreadyMember, Some(membership(&existing))),
            JoinResult::PendingApproval(_) => (pb::JoinOutcome::PendingApproval, None),
        };
        Ok(Response::new(pb::JoinGroupResponse { outcome: outcome as i32, membership: joined }))
    }

    async fn leave_group(&self, request: Request<pb::LeaveGroupRequest>) -> GrpcResult<pb::LeaveGroupResponse> {
        let actor = actor(&request)?;
        let group_id = parse::group_id(request.get_ref().group_id).map_err(invalid)?;
        self.service.leave_group(actor, group_id).await?;
        Ok(Response::new(pb::LeaveGroupResponse {}))
    }

    async fn add_members(&self, request: Request<pb::AddMembersRequest>) -> GrpcResult<pb::AddMembersResponse> {
        let actor = actor(&request)?;
        let parse::AddMembers { group_id, users } =
            parse::add_members(request.get_ref(), self.service.max_batch_size()).map_err(invalid)?;
        let outcome = self.service.add_members(actor, group_id, &users).await?;
        Ok(Response::new(pb::AddMembersResponse {
            added: outcome.added.iter().map(membership).collect(),
            already_member_user_ids: outcome.already_members.iter().map(|existing| existing.user_id.get()).collect(),
        }))
    }

    async fn remove_member(&self, request: Request<pb::RemoveMemberRequest>) -> GrpcResult<pb::RemoveMemberResponse> {
        let actor = actor(&request)?;
        let parse::MemberRef { group_id, user } =
            parse::member_ref(request.get_ref().group_id, request.get_ref().user_id).map_err(invalid)?;
        self.service.remove_member(actor, group_id, user).await?;
        Ok(Response::new(pb::RemoveMemberResponse {}))
    }

    async fn list_members(&self, request: Request<pb::ListMembersRequest>) -> GrpcResult<pb::ListMembersResponse> {
        let actor = actor(&request)?;
        let listing = parse::list_members(request.get_ref()).map_err(invalid)?;
        let parse::UserKeyedPage { group_id, size, after } = listing.page;
        let page = self.service.list_members(actor, group_id, listing.role, size, after).await?;
        Ok(Response::new(pb::ListMembersResponse {
            members: page.items.iter().map(membership).collect(),
            next_page_token: page.next_page_token(),
        }))
    }

    async fn get_membership(
        &self,
        request: Request<pb::GetMembershipRequest>,
    ) -> GrpcResult<pb::GetMembershipResponse> {
        let actor = actor(&request)?;
        let parse::GetMembership { group_id, user } = parse::get_membership(request.get_ref()).map_err(invalid)?;
        let found = self.service.get_membership(actor, group_id, user).await?;
        Ok(Response::new(pb::GetMembershipResponse { membership: Some(membership(&found)) }))
    }

    async fn list_user_groups(
        &self,
        request: Request<pb::ListUserGroupsRequest>,
    ) -> GrpcResult<pb::ListUserGroupsResponse> {
        let actor = actor(&request)?;
        let parse::ListUserGroups { size, before } = parse::list_user_groups(request.get_ref()).map_err(invalid)?;
        let page = self.service.list_user_groups(actor, size, before).await?;
        Ok(Response::new(pb::ListUserGroupsResponse {
            groups: page
                .items
                .iter()
                .map(|(group, joined)| pb::UserGroup {
                    group: Some(self.group(group)),
                    membership: Some(membership(joined)),
                })
                .collect(),
            next_page_token: page.next_page_token(),
        }))
    }

    async fn set_member_role(
        &self,
        request: Request<pb::SetMemberRoleRequest>,
    ) -> GrpcResult<pb::SetMemberRoleResponse> {
        let actor = actor(&request)?;
        let parse::SetMemberRole { group_id, user, role } =
            parse::set_member_role(request.get_ref()).map_err(invalid)?;
        let changed = self.service.set_member_role(actor, group_id, user, role).await?;
        Ok(Response::new(pb::SetMemberRoleResponse { membership: Some(membership(&changed)) }))
    }

    async fn transfer_ownership(
        &self,
        request: Request<pb::TransferOwnershipRequest>,
    ) -> GrpcResult<pb::TransferOwnershipResponse> {
        let actor = actor(&request)?;
        let parse::TransferOwnership { group_id, new_owner } =
            parse::transfer_ownership(request.get_ref()).map_err(invalid)?;
        let group = self.service.transfer_ownership(actor, group_id, new_owner).await?;
        Ok(Response::new(pb::TransferOwnershipResponse { group: Some(self.group(&group)) }))
    }

    async fn ban_member(&self, request: Request<pb::BanMemberRequest>) -> GrpcResult<pb::BanMemberResponse> {
        let actor = actor(&request)?;
        let parse::BanMember { group_id, user, terms } =
            parse::ban_member(request.get_ref(), Utc::now()).map_err(invalid)?;
        let ban = self.service.ban_member(actor, group_id, user, terms).await?;
        Ok(Response::new(pb::BanMemberResponse { ban: Some(convert::ban(&ban)) }))
    }

    async fn unban_member(&self, request: Request<pb::UnbanMemberRequest>) -> GrpcResult<pb::UnbanMemberResponse> {
        let actor = actor(&request)?;
        let parse::MemberRef { group_id, user } =
            parse::member_ref(request.get_ref().group_id, request.get_ref().user_id).map_err(invalid)?;
        self.service.unban_member(actor, group_id, user).await?;
        Ok(Response::new(pb::UnbanMemberResponse {}))
    }

    async fn list_bans(&self, request: Request<pb::ListBansRequest>) -> GrpcResult<pb::ListBansResponse> {
        let actor = actor(&request)?;
        let listing = request.get_ref();
        let parse::UserKeyedPage { group_id, size, after } =
            parse::user_keyed_page(listing.group_id, listing.page_size, &listing.page_token).map_err(invalid)?;
        let page = self.service.list_bans(actor, group_id, size, after).await?;
        Ok(Response::new(pb::ListBansResponse {
            bans: page.items.iter().map(convert::ban).collect(),
            next_page_token: page.next_page_token(),
        }))
    }

    async fn mute_member(&self, request: Request<pb::MuteMemberRequest>) -> GrpcResult<pb::MuteMemberResponse> {
        let actor = actor(&request)?;
        let parse::MuteMember { group_id, user, until } =
            parse::mute_member(request.get_ref(), Utc::now()).map_err(invalid)?;
        let muted = self.service.mute_member(actor, group_id, user, until).await?;
        Ok(Response::new(pb::MuteMemberResponse { membership: Some(membership(&muted)) }))
    }

    async fn unmute_member(&self, request: Request<pb::UnmuteMemberRequest>) -> GrpcResult<pb::UnmuteMemberResponse> {
        let actor = actor(&request)?;
        let parse::MemberRef { group_id, user } =
            parse::member_ref(request.get_ref().group_id, request.get_ref().user_id).map_err(invalid)?;
        let unmuted = self.service.unmute_member(actor, group_id, user).await?;
        Ok(Response::new(pb::UnmuteMemberResponse { membership: Some(membership(&unmuted)) }))
    }

    async fn list_join_requests(
        &self,
        request: Request<pb::ListJoinRequestsRequest>,
    ) -> GrpcResult<pb::ListJoinRequestsResponse> {
        let actor = actor(&request)?;
        let parse::ListJoinRequests { group_id, size, after } =
            parse::list_join_requests(request.get_ref()).map_err(invalid)?;
        let page = self.service.list_join_requests(actor, group_id, size, after).await?;
        Ok(Response::new(pb::ListJoinRequestsResponse {
            join_requests: page.items.iter().map(convert::join_request).collect(),
            next_page_token: page.next_page_token(),
        }))
    }

    async fn approve_join_request(
        &self,
        request: Request<pb::ApproveJoinRequestRequest>,
    ) -> GrpcResult<pb::ApproveJoinRequestResponse> {
        let actor = actor(&request)?;
        let parse::MemberRef { group_id, user } =
            parse::member_ref(request.get_ref().group_id, request.get_ref().user_id).map_err(invalid)?;
        let approved = self.service.approve_join_request(actor, group_id, user).await?;
        Ok(Response::new(pb::ApproveJoinRequestResponse { membership: Some(membership(&approved)) }))
    }

    async fn reject_join_request(
        &self,
        request: Request<pb::RejectJoinRequestRequest>,
    ) -> GrpcResult<pb::RejectJoinRequestResponse> {
        let actor = actor(&request)?;
        let parse::MemberRef { group_id, user } =
            parse::member_ref(request.get_ref().group_id, request.get_ref().user_id).map_err(invalid)?;
        self.service.reject_join_request(actor, group_id, user).await?;
        Ok(Response::new(pb::RejectJoinRequestResponse {}))
    }

    async fn create_invite(&self, request: Request<pb::CreateInviteRequest>) -> GrpcResult<pb::CreateInviteResponse> {
        let actor = actor(&request)?;
        let parse::CreateInvite { group_id, ttl, max_uses } =
            parse::create_invite(request.get_ref()).map_err(invalid)?;
        let invite = self.service.create_invite(actor, group_id, ttl, max_uses).await?;
        Ok(Response::new(pb::CreateInviteResponse { invite: Some(convert::invite(&invite)) }))
    }

    async fn revoke_invite(&self, request: Request<pb::RevokeInviteRequest>) -> GrpcResult<pb::RevokeInviteResponse> {
        let actor = actor(&request)?;
        let code = parse::invite_code(&request.get_ref().code).map_err(invalid)?;
        self.service.revoke_invite(actor, &code).await?;
        Ok(Response::new(pb::RevokeInviteResponse {}))
    }

    async fn join_with_invite(
        &self,
        request: Request<pb::JoinWithInviteRequest>,
    ) -> GrpcResult<pb::JoinWithInviteResponse> {
        let actor = actor(&request)?;
        let code = parse::invite_code(&request.get_ref().code).map_err(invalid)?;
        let (outcome, joined) = match self.service.join_with_invite(actor, &code).await? {
            Redemption::Joined(joined) => (pb::JoinOutcome::Joined, joined),
            Redemption::AlreadyMember(existing) => (pb::JoinOutcome::AlreadyMember, existing),
        };
        Ok(Response::new(pb::JoinWithInviteResponse { outcome: outcome as i32, membership: Some(membership(&joined)) }))
    }
}
