//! The abuse suite (issue 10, "requests that cannot hurt a pod"; docs/security.md): every
//! RPC of every service gets hostile requests, generated field by field from the API's
//! descriptor (`fanfare_tests::abuse::cases`): extreme ids and seqs, unknown enum numbers,
//! strings of almost 4 MiB and strings that are not UTF-8, lists at their limit and at
//! 1,000× it, requests just over 4 MiB, bytes that are no request at all, no token, a wrong
//! token, acting users that are not a positive int64, and methods that do not exist.
//!
//! Each must get its own answer (INVALID_ARGUMENT naming the field, RESOURCE_EXHAUSTED,
//! UNAUTHENTICATED, UNIMPLEMENTED, or an ordinary answer such as NOT_FOUND; never INTERNAL,
//! UNKNOWN or a timeout) within a 5 s deadline, with an error of a few KiB at most, while
//! another caller's ordinary call to the same pod keeps succeeding.
//!
//! The services run with a service token, as in production. Everything runs on memory; the
//! values that reach storage (ids past any row, i64 extremes) run on Postgres too.

use std::collections::HashMap;
use std::sync::Arc;

use fanfare_bus::UpdateBus;
use fanfare_core::client::ServiceTokenInterceptor;
use fanfare_fanout::follows::store::PostgresFollowStore;
use fanfare_fanout::{FanoutBackends, FanoutConfig};
use fanfare_proto::common::v1 as common;
use fanfare_proto::fanout::v1 as fanout_pb;
use fanfare_proto::fanout::v1::fanout_service_client::FanoutServiceClient;
use fanfare_proto::groups::v1 as groups_pb;
use fanfare_proto::groups::v1::group_service_client::GroupServiceClient;
use fanfare_proto::messages::v1 as messages_pb;
use fanfare_proto::messages::v1::message_service_client::MessageServiceClient;
use fanfare_proto::prost_types::field_descriptor_proto::Type;
use fanfare_testkit::{Storage, TestStack, as_user};
use fanfare_tests::abuse::cases::{Baseline, Catalog, Lists, Scope, cases};
use fanfare_tests::abuse::{Case, run, unknown_methods};
use fanfare_tests::fanout::{TestFanout, dev_config};
use fanfare_tests::groups::seconds_from_now;
use fanfare_tests::messages::settle;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

/// The one service token of the three pods (each sends it to the others, and takes it).
const TOKEN: &str = "abuse-suite-token";
/// Positions one Subscribe may carry here, so 1,000× the limit stays under 4 MiB.
const MAX_GROUPS_PER_STREAM: usize = 100;

const GROUPS: &str = "fanfare.groups.v1.GroupService";
const MESSAGES: &str = "fanfare.messages.v1.MessageService";
const FANOUT: &str = "fanfare.fanout.v1.FanoutService";

type Authed = InterceptedService<Channel, ServiceTokenInterceptor>;

/// The three services with a token and the data the baselines act on.
struct Pods {
    stack: TestStack,
    fanout: TestFanout,
    /// A community of 1 (owner), 2 and 3, with messages 1 and 2 from 2: read, never changed.
    quiet: i64,
    /// A community of 1 (owner), 2, 3 and 5: moderated, left, changed.
    busy: i64,
    /// A community of 1 (owner) and 2: handed over and archived.
    doomed: i64,
    invite_code: String,
    job_id: i64,
}

async fn channel(addr: std::net::SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}")).expect("a valid url").connect().await.expect("connects")
}

fn authed(channel: Channel) -> Authed {
    InterceptedService::new(channel, ServiceTokenInterceptor::new(Some(TOKEN)).expect("a valid token"))
}

fn with_token(server: &mut fanfare_core::config::ServerConfig) {
    server.allow_unauthenticated = false;
    server.service_token = Some(TOKEN.to_owned());
}

impl Pods {
    async fn start(storage: Storage) -> Self {
        let stack = TestStack::spawn_with(
            storage,
            |groups| {
                with_token(&mut groups.server);
                groups.limits.user_changes_per_second = 0;
            },
            |messages| {
                with_token(&mut messages.server);
                messages.limits.user_sends_per_second = 0;
                messages.limits.user_changes_per_second = 0;
                messages.limits.user_reactions_per_second = 0;
            },
        )
        .await
        .expect("the stack starts");
        let fanout = start_fanout(&stack, storage).await;
        let mut pods = Self { stack, fanout, quiet: 0, busy: 0, doomed: 0, invite_code: String::new(), job_id: 0 };
        pods.seed().await;
        pods
    }

    async fn seed(&mut self) {
        let mut groups = GroupServiceClient::new(authed(channel(self.stack.groups_addr).await));
        let mut messages = MessageServiceClient::new(authed(channel(self.stack.messages_addr).await));
        let mut fanout = FanoutServiceClient::new(authed(channel(self.fanout.addr).await));
        let mut community = async |members: Vec<i64>| {
            let request = groups_pb::CreateGroupRequest {
                kind: common::GroupKind::Community as i32,
                title: "abuse".to_owned(),
                ..Default::default()
            };
            let created = groups.create_group(as_user(1, request)).await.expect("CreateGroup");
            let group_id = created.into_inner().group.expect("a group").group_id;
            let add = groups_pb::AddMembersRequest { group_id, user_ids: members };
            groups.add_members(as_user(1, add)).await.expect("AddMembers");
            group_id
        };
        self.quiet = community(vec![2, 3]).await;
        self.busy = community(vec![2, 3, 5]).await;
        self.doomed = community(vec![2]).await;
        let invite = groups_pb::CreateInviteRequest { group_id: self.busy, ttl_seconds: 0, max_uses: 0 };
        let invite = groups.create_invite(as_user(1, invite)).await.expect("CreateInvite").into_inner();
        self.invite_code = invite.invite.expect("an invite").code;
        settle(self.stack.groups_store.as_ref()).await;

        for key in ["first", "second"] {
            let request = fanfare_tests::messages::text(self.quiet, key, key);
            messages.send_message(as_user(2, request)).await.expect("SendMessage");
        }
        fanout.follow(as_user(2, fanout_pb::FollowRequest { creator_user_id: 1 })).await.expect("Follow");
        let job = fanout_pb::StartFanoutJobRequest {
            kind: fanout_pb::FanoutJobKind::BroadcastNotification as i32,
            payload_ref: "post-1".to_owned(),
            idempotency_key: "seed".to_owned(),
            rate_limit_per_second: 0,
        };
        let job = fanout.start_fanout_job(as_user(1, job)).await.expect("StartFanoutJob").into_inner();
        self.job_id = job.job.expect("a job").job_id;
    }

    fn groups_baselines(&self) -> Vec<Baseline> {
        let (quiet, busy, doomed) = (self.quiet, self.busy, self.doomed);
        let code = self.invite_code.clone();
        vec![
            Baseline::new(
                "CreateGroup",
                Some(1),
                &groups_pb::CreateGroupRequest {
                    kind: common::GroupKind::Community as i32,
                    title: "t".to_owned(),
                    description: "d".to_owned(),
                    avatar_ref: "a".to_owned(),
                    settings: Some(fanfare_tests::groups::settings(
                        common::JoinPolicy::Open,
                        common::PostPolicy::AllMembers,
                    )),
                },
            ),
            Baseline::new("GetGroup", Some(1), &groups_pb::GetGroupRequest { group_id: quiet }),
            Baseline::new("BatchGetGroups", Some(1), &groups_pb::BatchGetGroupsRequest { group_ids: vec![quiet] }),
            Baseline::new(
                "UpdateGroupSettings",
                Some(1),
                &groups_pb::UpdateGroupSettingsRequest {
                    group_id: busy,
                    title: Some("t".to_owned()),
                    description: Some("d".to_owned()),
                    avatar_ref: Some("a".to_owned()),
                    join_policy: Some(common::JoinPolicy::Open as i32),
                    slow_mode_seconds: Some(0),
                    history_visible_to_new_members: Some(true),
                    post_policy: Some(common::PostPolicy::AllMembers as i32),
                    min_follow_age_seconds: Some(0),
                },
            ),
            Baseline::new("ArchiveGroup", Some(1), &groups_pb::ArchiveGroupRequest { group_id: doomed }),
            Baseline::new("JoinGroup", Some(4), &groups_pb::JoinGroupRequest { group_id: busy }),
            Baseline::new("LeaveGroup", Some(3), &groups_pb::LeaveGroupRequest { group_id: busy }),
            Baseline::new("AddMembers", Some(1), &groups_pb::AddMembersRequest { group_id: busy, user_ids: vec![6] }),
            Baseline::new("RemoveMember", Some(1), &groups_pb::RemoveMemberRequest { group_id: busy, user_id: 6 }),
            Baseline::new(
                "ListMembers",
                Some(1),
                &groups_pb::ListMembersRequest {
                    group_id: quiet,
                    page_size: 10,
                    page_token: String::new(),
                    role: common::Role::Member as i32,
                },
            ),
            Baseline::new("GetMembership", Some(1), &groups_pb::GetMembershipRequest { group_id: quiet, user_id: 2 }),
            Baseline::new(
                "ListUserGroups",
                Some(1),
                &groups_pb::ListUserGroupsRequest { page_size: 10, page_token: String::new() },
            ),
            Baseline::new(
                "SetMemberRole",
                Some(1),
                &groups_pb::SetMemberRoleRequest { group_id: busy, user_id: 2, role: common::Role::Admin as i32 },
            ),
            Baseline::new(
                "TransferOwnership",
                Some(1),
                &groups_pb::TransferOwnershipRequest { group_id: doomed, new_owner_user_id: 2 },
            ),
            Baseline::new(
                "BanMember",
                Some(1),
                &groups_pb::BanMemberRequest {
                    group_id: busy,
                    user_id: 7,
                    reason: "spam".to_owned(),
                    until: Some(seconds_from_now(3_600)),
                },
            ),
            Baseline::new("UnbanMember", Some(1), &groups_pb::UnbanMemberRequest { group_id: busy, user_id: 7 }),
            Baseline::new(
                "ListBans",
                Some(1),
                &groups_pb::ListBansRequest { group_id: busy, page_size: 10, page_token: String::new() },
            ),
            Baseline::new(
                "MuteMember",
                Some(1),
                &groups_pb::MuteMemberRequest { group_id: busy, user_id: 5, until: Some(seconds_from_now(3_600)) },
            ),
            Baseline::new("UnmuteMember", Some(1), &groups_pb::UnmuteMemberRequest { group_id: busy, user_id: 5 }),
            Baseline::new(
                "ListJoinRequests",
                Some(1),
                &groups_pb::ListJoinRequestsRequest { group_id: busy, page_size: 10, page_token: String::new() },
            ),
            Baseline::new(
                "ApproveJoinRequest",
                Some(1),
                &groups_pb::ApproveJoinRequestRequest { group_id: busy, user_id: 8 },
            ),
            Baseline::new(
                "RejectJoinRequest",
                Some(1),
                &groups_pb::RejectJoinRequestRequest { group_id: busy, user_id: 8 },
            ),
            Baseline::new(
                "CreateInvite",
                Some(1),
                &groups_pb::CreateInviteRequest { group_id: busy, ttl_seconds: 3_600, max_uses: 5 },
            ),
            Baseline::new("RevokeInvite", Some(1), &groups_pb::RevokeInviteRequest { code: code.clone() }),
            Baseline::new("JoinWithInvite", Some(9), &groups_pb::JoinWithInviteRequest { code }),
        ]
    }

    fn messages_baselines(&self) -> Vec<Baseline> {
        let (quiet, busy) = (self.quiet, self.busy);
        let attachment = common::Attachment {
            media_id: "media-1".to_owned(),
            mime_type: "image/jpeg".to_owned(),
            size_bytes: 1_024,
            width: 640,
            height: 480,
            duration_ms: 0,
        };
        vec![
            Baseline::new(
                "SendMessage",
                Some(2),
                &messages_pb::SendMessageRequest {
                    group_id: busy,
                    client_message_id: "abuse".to_owned(),
                    text: "hello".to_owned(),
                    attachments: vec![attachment],
                    reply_to_message_seq: 0,
                    mentioned_user_ids: vec![3],
                    mentions_all: false,
                },
            ),
            Baseline::new(
                "EditMessage",
                Some(2),
                &messages_pb::EditMessageRequest { group_id: quiet, message_seq: 1, text: "edited".to_owned() },
            ),
            Baseline::new(
                "DeleteMessage",
                Some(2),
                &messages_pb::DeleteMessageRequest { group_id: busy, message_seq: 1 },
            ),
            Baseline::new(
                "PurgeUserMessages",
                Some(1),
                &messages_pb::PurgeUserMessagesRequest {
                    group_id: busy,
                    user_id: 3,
                    since: Some(seconds_from_now(-60)),
                },
            ),
            Baseline::new(
                "AddReaction",
                Some(3),
                &messages_pb::AddReactionRequest { group_id: quiet, message_seq: 1, emoji: "👍".to_owned() },
            ),
            Baseline::new(
                "RemoveReaction",
                Some(3),
                &messages_pb::RemoveReactionRequest { group_id: quiet, message_seq: 1, emoji: "👍".to_owned() },
            ),
            Baseline::new("PinMessage", Some(1), &messages_pb::PinMessageRequest { group_id: quiet, message_seq: 1 }),
            Baseline::new(
                "UnpinMessage",
                Some(1),
                &messages_pb::UnpinMessageRequest { group_id: quiet, message_seq: 1 },
            ),
            Baseline::new(
                "ListMessages",
                Some(1),
                &messages_pb::ListMessagesRequest {
                    group_id: quiet,
                    direction: messages_pb::Direction::Backward as i32,
                    anchor_message_seq: 2,
                    page_size: 10,
                    page_token: String::new(),
                },
            ),
            Baseline::new(
                "GetMessages",
                Some(1),
                &messages_pb::GetMessagesRequest {
                    group_id: quiet,
                    message_ids: vec![uuid::Uuid::now_v7().to_string()],
                    message_seqs: vec![1],
                },
            ),
            Baseline::new(
                "GetUpdates",
                Some(1),
                &messages_pb::GetUpdatesRequest { group_id: quiet, page_size: 10, ..Default::default() },
            ),
            Baseline::new("MarkRead", Some(3), &messages_pb::MarkReadRequest { group_id: quiet, message_seq: 1 }),
            Baseline::new("GetUnreadCounts", Some(3), &messages_pb::GetUnreadCountsRequest { group_ids: vec![quiet] }),
            Baseline::new(
                "AppendSystemUpdates",
                None,
                &messages_pb::AppendSystemUpdatesRequest {
                    events: vec![messages_pb::SystemEvent {
                        outbox_id: 9_000_000,
                        event: Some(common::GroupEvent {
                            group_id: busy,
                            actor_user_id: 1,
                            occurred_at: Some(seconds_from_now(0)),
                            change: Some(common::group_event::Change::MemberUnmuted(common::MemberUnmuted {
                                user_id: 5,
                            })),
                        }),
                    }],
                },
            ),
        ]
    }

    fn fanout_baselines(&self) -> Vec<Baseline> {
        let listing = |user_id| fanout_pb::ListFollowersRequest { user_id, page_size: 10, page_token: String::new() };
        vec![
            Baseline::new("Follow", Some(3), &fanout_pb::FollowRequest { creator_user_id: 1 }),
            Baseline::new("Unfollow", Some(3), &fanout_pb::UnfollowRequest { creator_user_id: 1 }),
            Baseline::new("ListFollowers", Some(1), &listing(1)),
            Baseline::new(
                "ListFollowing",
                Some(2),
                &fanout_pb::ListFollowingRequest { user_id: 2, page_size: 10, page_token: String::new() },
            ),
            Baseline::new("GetFollowCounts", Some(1), &fanout_pb::GetFollowCountsRequest { user_ids: vec![1, 2] }),
            Baseline::new(
                "CheckFollows",
                Some(1),
                &fanout_pb::CheckFollowsRequest { follower_user_id: 2, creator_user_ids: vec![1] },
            ),
            Baseline::new(
                "Subscribe",
                Some(2),
                &fanout_pb::SubscribeRequest {
                    positions: vec![fanout_pb::GroupPosition { group_id: self.quiet, event_seq: 1, entry_token: 0 }],
                    cursor: String::new(),
                },
            ),
            Baseline::new("ListStreams", Some(2), &fanout_pb::ListStreamsRequest {}),
            Baseline::new(
                "StartFanoutJob",
                Some(1),
                &fanout_pb::StartFanoutJobRequest {
                    kind: fanout_pb::FanoutJobKind::NewGroupInvitation as i32,
                    payload_ref: "post-2".to_owned(),
                    idempotency_key: "abuse".to_owned(),
                    rate_limit_per_second: 10,
                },
            ),
            Baseline::new("GetFanoutJob", Some(1), &fanout_pb::GetFanoutJobRequest { job_id: self.job_id }),
            Baseline::new(
                "ListFanoutJobs",
                Some(1),
                &fanout_pb::ListFanoutJobsRequest { page_size: 10, page_token: String::new() },
            ),
            Baseline::new("CancelFanoutJob", Some(1), &fanout_pb::CancelFanoutJobRequest { job_id: self.job_id }),
        ]
    }
}

async fn start_fanout(stack: &TestStack, storage: Storage) -> TestFanout {
    let mut config: FanoutConfig =
        dev_config(&format!("http://{}", stack.groups_addr), &format!("http://{}", stack.messages_addr));
    with_token(&mut config.server);
    config.limits.user_changes_per_second = 0;
    config.jobs.user_jobs_per_minute = 0;
    config.live.max_groups_per_stream = MAX_GROUPS_PER_STREAM;
    let backends = match storage {
        Storage::Memory => FanoutBackends::in_memory(Arc::clone(&stack.bus)),
        Storage::Postgres => {
            let url = stack.database().expect("a Postgres stack has a database").url();
            let store = PostgresFollowStore::connect(&url, 4).await.expect("connect the fanout store");
            PostgresFollowStore::migrate(store.pool()).await.expect("migrate the fanout schema");
            let redis = std::env::var("REDIS_URL").unwrap_or_else(|_| fanfare_testkit::stack::DEFAULT_REDIS_URL.into());
            let bus: Arc<dyn UpdateBus> =
                fanfare_bus::open_bus(Some(&redis), &stack.redis_namespace).await.expect("open the bus");
            let mut backends = FanoutBackends::in_memory(bus);
            backends.jobs = Arc::new(fanfare_fanout::jobs::PostgresJobStore::from_pool(store.pool().clone()));
            backends.follows = Arc::new(store);
            backends
        }
    };
    TestFanout::serve(config, backends, None).await.expect("the fanout pod starts")
}

/// The limit of every list of a request, and the other name GetMessages' seqs go by.
fn lists() -> Lists {
    let groups_batch = fanfare_groups::config::DEFAULT_MAX_BATCH_SIZE;
    let fanout_batch = fanfare_fanout::config::DEFAULT_MAX_BATCH_SIZE;
    let limits = [
        ("fanfare.groups.v1.BatchGetGroupsRequest.group_ids", groups_batch),
        ("fanfare.groups.v1.AddMembersRequest.user_ids", groups_batch),
        ("fanfare.messages.v1.SendMessageRequest.attachments", fanfare_messages::domain::MAX_ATTACHMENTS),
        ("fanfare.messages.v1.SendMessageRequest.mentioned_user_ids", fanfare_messages::domain::MAX_MENTIONS),
        // docs/messages.md: GetMessages 100 ids and seqs together, GetUnreadCounts 1,000
        // groups, AppendSystemUpdates 500 events.
        ("fanfare.messages.v1.GetMessagesRequest.message_ids", 100),
        ("fanfare.messages.v1.GetMessagesRequest.message_seqs", 100),
        ("fanfare.messages.v1.GetUnreadCountsRequest.group_ids", 1_000),
        ("fanfare.messages.v1.AppendSystemUpdatesRequest.events", 500),
        ("fanfare.fanout.v1.GetFollowCountsRequest.user_ids", fanout_batch),
        ("fanfare.fanout.v1.CheckFollowsRequest.creator_user_ids", fanout_batch),
        ("fanfare.fanout.v1.SubscribeRequest.positions", MAX_GROUPS_PER_STREAM),
    ];
    Lists {
        limits: limits.into_iter().map(|(field, limit)| (field.to_owned(), limit)).collect(),
        aliases: HashMap::from([(
            "fanfare.messages.v1.GetMessagesRequest.message_seqs".to_owned(),
            "message_ids".to_owned(),
        )]),
    }
}

/// Every case of every method of `service`, each from its baseline (every method must
/// have one), plus unknown methods when the scope has identity cases.
fn service_cases(catalog: &Catalog, service: &str, baselines: &[Baseline], scope: Scope) -> Vec<Case> {
    let lists = lists();
    let methods = catalog.methods_of(service);
    assert!(!methods.is_empty(), "{service} has methods");
    let mut found = Vec::new();
    for method in &methods {
        let name = method.path.rsplit('/').next().expect("a method name");
        let baseline = baselines
            .iter()
            .find(|baseline| baseline.method == name)
            .unwrap_or_else(|| panic!("no baseline for {service}/{name}: add one to this suite"));
        found.extend(cases(catalog, method, baseline, &lists, scope));
    }
    if scope.identity {
        found.extend(unknown_methods(service));
    }
    found
}

async fn groups_canary(client: GroupServiceClient<Authed>, group_id: i64) -> Result<(), tonic::Status> {
    let mut client = client;
    let mut request = as_user(1, groups_pb::GetGroupRequest { group_id });
    request.set_timeout(fanfare_tests::abuse::DEADLINE);
    client.get_group(request).await.map(drop)
}

async fn messages_canary(client: MessageServiceClient<Authed>, group_id: i64) -> Result<(), tonic::Status> {
    let mut client = client;
    let mut request = as_user(1, messages_pb::GetUpdatesRequest { group_id, page_size: 10, ..Default::default() });
    request.set_timeout(fanfare_tests::abuse::DEADLINE);
    client.get_updates(request).await.map(drop)
}

async fn fanout_canary(client: FanoutServiceClient<Authed>) -> Result<(), tonic::Status> {
    let mut client = client;
    let mut request = as_user(1, fanout_pb::GetFollowCountsRequest { user_ids: vec![1] });
    request.set_timeout(fanfare_tests::abuse::DEADLINE);
    client.get_follow_counts(request).await.map(drop)
}

/// Runs `scope` against all three pods, each with its canary.
async fn abuse_every_pod(storage: Storage, scope: Scope, only: Option<&str>) {
    let pods = Pods::start(storage).await;
    let catalog = Catalog::load();
    let wanted = |service: &str| only.is_none_or(|only| only == service);

    if wanted(GROUPS) {
        let cases = service_cases(&catalog, GROUPS, &pods.groups_baselines(), scope);
        let canary = GroupServiceClient::new(authed(channel(pods.stack.groups_addr).await));
        let quiet = pods.quiet;
        let hostile = channel(pods.stack.groups_addr).await;
        run(hostile, TOKEN, cases, || groups_canary(canary.clone(), quiet)).await.assert_clean();
    }
    if wanted(MESSAGES) {
        let cases = service_cases(&catalog, MESSAGES, &pods.messages_baselines(), scope);
        let canary = MessageServiceClient::new(authed(channel(pods.stack.messages_addr).await));
        let quiet = pods.quiet;
        let hostile = channel(pods.stack.messages_addr).await;
        run(hostile, TOKEN, cases, || messages_canary(canary.clone(), quiet)).await.assert_clean();
    }
    if wanted(FANOUT) {
        let cases = service_cases(&catalog, FANOUT, &pods.fanout_baselines(), scope);
        let canary = FanoutServiceClient::new(authed(channel(pods.fanout.addr).await));
        let hostile = channel(pods.fanout.addr).await;
        run(hostile, TOKEN, cases, || fanout_canary(canary.clone())).await.assert_clean();
    }
}

#[tokio::test]
async fn the_groups_pod_answers_every_hostile_request() {
    abuse_every_pod(Storage::Memory, Scope::ALL, Some(GROUPS)).await;
}

#[tokio::test]
async fn the_messages_pod_answers_every_hostile_request() {
    abuse_every_pod(Storage::Memory, Scope::ALL, Some(MESSAGES)).await;
}

#[tokio::test]
async fn the_fanout_pod_answers_every_hostile_request() {
    abuse_every_pod(Storage::Memory, Scope::ALL, Some(FANOUT)).await;
}

/// The values that reach storage (ids and seqs past any row, i64 extremes, enum numbers) on
/// Postgres, every service.
#[tokio::test]
async fn extreme_values_reach_postgres_and_are_answered() {
    abuse_every_pod(Storage::Postgres, Scope::VALUES, None).await;
}

/// No request field is `bytes`: invalid UTF-8 can only arrive in a `string`, which the
/// generated cases send raw (and which prost refuses while decoding).
#[test]
fn no_request_field_is_bytes() {
    let bytes_fields: Vec<String> = Catalog::load()
        .request_fields()
        .into_iter()
        .filter(|(_, kind)| *kind == Type::Bytes)
        .map(|(field, _)| field)
        .collect();
    assert!(bytes_fields.is_empty(), "bytes fields need their own cases: {bytes_fields:?}");
}
