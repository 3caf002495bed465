//! Caller identities across services (docs/security.md, "Callers"): groups and messages each
//! read a callers file; groups relays its outbox to messages under its own identity; nobody
//! else may append to a group's log, a relaying caller cannot act for users, and a reused
//! outbox id with other content is refused rather than taken as a duplicate.

use fanfare_core::callers::token_sha256_hex;
use fanfare_core::client::ServiceTokenInterceptor;
use fanfare_core::status::ErrorReason;
use fanfare_proto::common::v1 as common;
use fanfare_proto::common::v1::update::Change;
use fanfare_proto::groups::v1::group_service_client::GroupServiceClient;
use fanfare_proto::messages::v1 as pb;
use fanfare_proto::messages::v1::message_service_client::MessageServiceClient;
use fanfare_testkit::{Storage, TestStack, as_user};
use fanfare_tests::messages::settle;
use fanfare_tests::{error_metadata, expect_code, expect_reason, on_every_storage};
use tonic::Code;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

on_every_storage!(only_the_groups_identity_appends_to_logs_and_callers_keep_to_their_methods);

type Messages = MessageServiceClient<InterceptedService<Channel, ServiceTokenInterceptor>>;
type Groups = GroupServiceClient<InterceptedService<Channel, ServiceTokenInterceptor>>;

const GROUPS_TOKEN: &str = "groups-token";
const MESSAGES_TOKEN: &str = "messages-token";
const GATEWAY_TOKEN: &str = "gateway-token";

/// Writes a callers file to a fresh temporary path.
fn callers_file(name: &str, text: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("fanfare-{name}-callers-{}.toml", uuid::Uuid::new_v4()));
    std::fs::write(&path, text).expect("callers file written");
    path
}

fn caller(name: &str, token: &str, methods: &[&str], acts_for_users: bool) -> String {
    let methods = methods.iter().map(|method| format!("{method:?}")).collect::<Vec<_>>().join(", ");
    format!(
        "[[callers]]\nname = {name:?}\ntoken_sha256 = [{:?}]\nmethods = [{methods}]\nacts_for_users = {acts_for_users}\n\n",
        token_sha256_hex(token)
    )
}

async fn channel(addr: std::net::SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}")).expect("valid url").connect().await.expect("connects")
}

fn interceptor(token: Option<&str>) -> ServiceTokenInterceptor {
    ServiceTokenInterceptor::new(token).expect("a valid token")
}

fn left(outbox_id: i64, group_id: i64, user_id: i64) -> pb::SystemEvent {
    pb::SystemEvent {
        outbox_id,
        event: Some(common::GroupEvent {
            group_id,
            change: Some(common::group_event::Change::MemberLeft(common::MemberLeft { user_id })),
            ..Default::default()
        }),
    }
}

async fn only_the_groups_identity_appends_to_logs_and_callers_keep_to_their_methods(storage: Storage) {
    let groups_callers = callers_file(
        "groups",
        &[
            caller("messages", MESSAGES_TOKEN, &["fanfare.groups.v1.GroupService/*"], true),
            caller("gateway", GATEWAY_TOKEN, &["fanfare.groups.v1.GroupService/*"], true),
        ]
        .concat(),
    );
    let messages_callers = callers_file(
        "messages",
        &[
            caller("groups", GROUPS_TOKEN, &["fanfare.messages.v1.MessageService/AppendSystemUpdates"], false),
            caller("gateway", GATEWAY_TOKEN, &["fanfare.messages.v1.MessageService/*"], true),
        ]
        .concat(),
    );
    let stack = TestStack::spawn_with(
        storage,
        |config| {
            config.server.allow_unauthenticated = false;
            config.server.callers_file = Some(groups_callers.clone());
            config.server.service_token = Some(GROUPS_TOKEN.to_owned());
        },
        |config| {
            config.server.allow_unauthenticated = false;
            config.server.callers_file = Some(messages_callers.clone());
            config.server.service_token = Some(MESSAGES_TOKEN.to_owned());
        },
    )
    .await
    .expect("the stack starts");
    let groups_channel = channel(stack.groups_addr).await;
    let messages_channel = channel(stack.messages_addr).await;
    let mut gateway_groups: Groups =
        GroupServiceClient::with_interceptor(groups_channel, interceptor(Some(GATEWAY_TOKEN)));
    let mut gateway: Messages =
        MessageServiceClient::with_interceptor(messages_channel.clone(), interceptor(Some(GATEWAY_TOKEN)));
    let mut relay: Messages =
        MessageServiceClient::with_interceptor(messages_channel.clone(), interceptor(Some(GROUPS_TOKEN)));
    let mut anonymous: Messages = MessageServiceClient::with_interceptor(messages_channel, interceptor(None));

    // End to end under identities: groups relays its outbox as `groups`, messages asks groups
    // who may post as `messages`.
    let group_id = gateway_groups
        .create_group(as_user(
            1,
            fanfare_proto::groups::v1::CreateGroupRequest {
                kind: common::GroupKind::Community.into(),
                title: "callers".to_owned(),
                ..Default::default()
            },
        ))
        .await
        .expect("the gateway creates a group")
        .into_inner()
        .group
        .expect("a group")
        .group_id;
    gateway_groups
        .add_members(as_user(1, fanfare_proto::groups::v1::AddMembersRequest { group_id, user_ids: vec![2] }))
        .await
        .expect("the gateway adds a member");
    settle(stack.groups_store.as_ref()).await;
    let mut plain = fanfare_proto::messages::v1::message_service_client::MessageServiceClient::new(
        channel(stack.messages_addr).await,
    );
    expect_code(
        plain.get_updates(as_user(1, pb::GetUpdatesRequest { group_id, ..Default::default() })).await,
        Code::Unauthenticated,
    );
    send_with(&mut gateway, 2, group_id, "hello").await;
    let before = updates_of(&mut gateway, group_id).await;
    assert_eq!(before.len(), 4, "created, two joins (relayed by groups) and the post: {before:?}");

    // Only the groups identity may append to a log: the gateway may call every other method
    // of the service, but `Service/*` does not reach an internal one.
    let forged = pb::AppendSystemUpdatesRequest { events: vec![left(9_000_001, group_id, 2)] };
    let refused = gateway.append_system_updates(forged.clone()).await;
    let refused = expect_reason(refused, Code::PermissionDenied, ErrorReason::CallerNotAllowed);
    assert!(refused.message().contains("`gateway`"), "{refused:?}");
    assert_eq!(error_metadata(&refused, "caller"), "gateway");
    expect_code(anonymous.append_system_updates(forged.clone()).await, Code::Unauthenticated);
    // The relaying identity may not act for a user, nor call what it was not given.
    expect_code(relay.append_system_updates(as_user(1, forged.clone())).await, Code::PermissionDenied);
    expect_code(
        relay.send_message(as_user(2, fanfare_tests::messages::text(group_id, "k", "x"))).await,
        Code::PermissionDenied,
    );
    assert_eq!(updates_of(&mut gateway, group_id).await, before, "nothing refused reached the log");

    // A repeat of a relayed event with other content is refused, not answered as a duplicate.
    let appended = relay.append_system_updates(forged.clone()).await.expect("groups relays").into_inner();
    assert_eq!(appended.appended[0].event_seq, 5);
    let again = relay.append_system_updates(forged).await.expect("a repeat").into_inner();
    assert_eq!(again.appended, appended.appended, "a true repeat answers the original");
    let other_content = pb::AppendSystemUpdatesRequest { events: vec![left(9_000_001, group_id, 1)] };
    let conflict = relay.append_system_updates(other_content).await;
    let conflict = expect_reason(conflict, Code::AlreadyExists, ErrorReason::IdempotencyConflict);
    assert!(conflict.message().contains("9000001"), "{conflict:?}");
    let after = updates_of(&mut gateway, group_id).await;
    assert_eq!(after.len(), 5);
    let Some(Change::GroupEvent(event)) = &after[4].change else { panic!("a group event: {after:?}") };
    assert_eq!(event.change, Some(common::group_event::Change::MemberLeft(common::MemberLeft { user_id: 2 })));

    drop(stack);
    std::fs::remove_file(groups_callers).ok();
    std::fs::remove_file(messages_callers).ok();
}

async fn send_with(client: &mut Messages, user: i64, group_id: i64, body: &str) {
    client
        .send_message(as_user(user, fanfare_tests::messages::text(group_id, body, body)))
        .await
        .expect("the gateway sends");
}

async fn updates_of(client: &mut Messages, group_id: i64) -> Vec<common::Update> {
    let response = client
        .get_updates(as_user(1, pb::GetUpdatesRequest { group_id, page_size: 1_000, ..Default::default() }))
        .await
        .expect("the gateway reads the log")
        .into_inner();
    match response.result.expect("a result") {
        pb::get_updates_response::Result::Page(page) => page.updates,
        other => panic!("a page: {other:?}"),
    }
}
