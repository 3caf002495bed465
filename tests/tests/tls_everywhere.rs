//! TLS on every hop (docs/security.md, "TLS"): groups, messages and fanout each serve mTLS
//! with certificates made by the test, and call each other at `https://` URLs trusting the
//! test CA and presenting a client certificate: groups → messages (the outbox relay),
//! groups → fanout (FOLLOWERS_ONLY joins), messages → groups (who may post), fanout → groups
//! and messages (streams and their catch-up). A caller does CreateGroup → SendMessage →
//! Subscribe / GetUpdates end to end over TLS; a plaintext caller, or one without a client
//! certificate, is refused.
//!
//! Below the services: PostgreSQL with `ssl=on` reached with `sslmode=verify-full`, and
//! Redis on a TLS port reached at `rediss://` with the test CA (a private server of each,
//! started once per test process by the testkit).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use fanfare_bus::{BusEvent, UpdateBus};
use fanfare_core::client::lazy_channel;
use fanfare_core::config::DependencyConfig;
use fanfare_core::tls::ClientTls;
use fanfare_core::tls::testing::TestTlsFiles;
use fanfare_fanout::{FanoutBackends, FanoutConfig};
use fanfare_groups::GroupsConfig;
use fanfare_groups::store::{GroupStore as _, MemoryGroupStore, PostgresGroupStore};
use fanfare_messages::MessagesConfig;
use fanfare_messages::store::MemoryMessageStore;
use fanfare_proto::common::v1::{GroupKind, JoinPolicy, PostPolicy, Update, group_event, update};
use fanfare_proto::fanout::v1 as fanout_pb;
use fanfare_proto::fanout::v1::fanout_service_client::FanoutServiceClient;
use fanfare_proto::groups::v1 as groups_pb;
use fanfare_proto::groups::v1::group_service_client::GroupServiceClient;
use fanfare_proto::messages::v1 as messages_pb;
use fanfare_proto::messages::v1::message_service_client::MessageServiceClient;
use fanfare_testkit::as_user;
use fanfare_testkit::tls_servers::{TlsPostgres, TlsRedis};
use fanfare_tests::groups::settings;
use fanfare_tests::live::subscribe_fresh;
use fanfare_tests::messages::{EVENTUALLY, all_updates_paged, eventually, send_ok};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

/// The three services, serving mTLS on port 0 and calling each other over `https://`.
struct TlsServices {
    groups: SocketAddr,
    messages: SocketAddr,
    fanout: SocketAddr,
    shutdown: CancellationToken,
}

impl Drop for TlsServices {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// The URL other services and the test use: the name the certificates carry.
fn https(addr: SocketAddr) -> String {
    format!("https://localhost:{}", addr.port())
}

impl TlsServices {
    async fn start(files: &TestTlsFiles) -> Self {
        let bind = || TcpListener::bind("127.0.0.1:0");
        let (groups_listener, messages_listener, fanout_listener) =
            (bind().await.expect("bind"), bind().await.expect("bind"), bind().await.expect("bind"));
        let groups = groups_listener.local_addr().expect("an address");
        let messages = messages_listener.local_addr().expect("an address");
        let fanout = fanout_listener.local_addr().expect("an address");

        let mut groups_config = GroupsConfig::for_dev(DependencyConfig::default());
        groups_config.server.tls = files.server_config(true);
        groups_config.messages_url = Some(https(messages));
        groups_config.fanout_url = Some(https(fanout));
        let mut messages_config = MessagesConfig::for_dev(DependencyConfig::default(), https(groups));
        messages_config.server.tls = files.server_config(true);
        let mut fanout_config = FanoutConfig::for_dev(DependencyConfig::default(), https(groups), https(messages));
        fanout_config.server.tls = files.server_config(true);

        let shutdown = CancellationToken::new();
        let bus = fanfare_bus::open_bus(None, "").await.expect("an in-process bus");
        tokio::spawn(fanfare_groups::serve(
            groups_config,
            Arc::new(MemoryGroupStore::new()),
            groups_listener,
            shutdown.clone(),
        ));
        tokio::spawn(fanfare_messages::serve(
            messages_config,
            Arc::new(MemoryMessageStore::new()),
            Arc::clone(&bus),
            messages_listener,
            shutdown.clone(),
        ));
        tokio::spawn(fanfare_fanout::serve(
            fanout_config,
            FanoutBackends::in_memory(bus),
            fanout_listener,
            shutdown.clone(),
        ));
        Self { groups, messages, fanout, shutdown }
    }
}

fn channel(url: &str, tls: &ClientTls) -> Channel {
    lazy_channel(url, None, tls).expect("a valid URL")
}

#[tokio::test]
async fn the_services_speak_tls_to_each_other_and_to_their_callers() {
    let files = TestTlsFiles::new();
    let services = TlsServices::start(&files).await;
    let tls = ClientTls::load(&files.client_config()).expect("the client certificate loads");
    let mut groups = GroupServiceClient::new(channel(&https(services.groups), &tls));
    let mut messages = MessageServiceClient::new(channel(&https(services.messages), &tls));
    let mut fanout = FanoutServiceClient::new(channel(&https(services.fanout), &tls));

    // groups → fanout: user 2 may join user 1's FOLLOWERS_ONLY community once following.
    fanout.follow(as_user(2, fanout_pb::FollowRequest { creator_user_id: 1 })).await.expect("Follow over TLS");
    let request = groups_pb::CreateGroupRequest {
        kind: GroupKind::Community as i32,
        title: "over TLS".to_owned(),
        settings: Some(settings(JoinPolicy::FollowersOnly, PostPolicy::AllMembers)),
        ..Default::default()
    };
    let group = groups.create_group(as_user(1, request)).await.expect("CreateGroup over TLS").into_inner();
    let group_id = group.group.expect("the group").group_id;
    groups
        .join_group(as_user(2, groups_pb::JoinGroupRequest { group_id }))
        .await
        .expect("a follower joins: groups asked fanout over TLS");

    // fanout → groups: user 2's stream knows the group; messages → groups: user 1 may post;
    // the post reaches the stream.
    let (mut subscription, _) = subscribe_fresh(&mut fanout, 2).await;
    send_ok(&mut messages, 1, group_id, "tls-1", "sent over TLS").await;
    tokio::time::timeout(EVENTUALLY, subscription.until_message(group_id, "tls-1"))
        .await
        .expect("the message reaches the stream");

    // groups → messages: the outbox relay brings both joins into the log.
    let changes = |log: &[Update]| -> Vec<&'static str> {
        let mut names: Vec<&str> = log
            .iter()
            .filter_map(|entry| match entry.change.as_ref()? {
                update::Change::GroupEvent(event) => match event.change.as_ref()? {
                    group_event::Change::MemberJoined(_) => Some("joined"),
                    _ => None,
                },
                update::Change::MessagePosted(_) => Some("posted"),
                _ => None,
            })
            .collect();
        names.sort_unstable();
        names
    };
    eventually("both joins are relayed into the log", || {
        let mut messages = messages.clone();
        async move { changes(&all_updates_paged(&mut messages, 2, group_id, 100).await) == ["joined", "joined", "posted"] }
    })
    .await;

    // Callers without TLS, or without a certificate from the CA, are refused.
    let plaintext = GroupServiceClient::new(channel(&format!("http://{}", services.groups), &tls))
        .get_group(as_user(1, groups_pb::GetGroupRequest { group_id }))
        .await;
    assert!(plaintext.is_err(), "{plaintext:?}");
    let anonymous = ClientTls::default().with_ca_pem(files.ca().pem());
    let refused = tokio::time::timeout(
        Duration::from_secs(10),
        MessageServiceClient::new(channel(&https(services.messages), &anonymous))
            .get_updates(as_user(2, messages_pb::GetUpdatesRequest { group_id, ..Default::default() })),
    )
    .await
    .expect("refused at once");
    assert!(refused.is_err(), "{refused:?}");
}

#[tokio::test]
async fn postgres_is_reached_with_sslmode_verify_full() {
    use sqlx::{Connection as _, PgConnection};

    let postgres = TlsPostgres::shared();
    let verify_full = postgres.url("verify-full");
    let mut connection = PgConnection::connect(&verify_full).await.expect("verify-full connects");
    let (ssl,): (bool,) = sqlx::query_as("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .fetch_one(&mut connection)
        .await
        .expect("pg_stat_ssl answers");
    assert!(ssl, "the connection is TLS");
    connection.close().await.expect("close");

    // A store opens its pool, migrates and answers through the same URL, as a service's
    // DATABASE_URL would.
    let store = PostgresGroupStore::connect(&verify_full, 2).await.expect("the groups store connects");
    PostgresGroupStore::migrate(store.pool()).await.expect("migrations run over TLS");
    store.ping().await.expect("the store answers");

    // The server requires TLS; a certificate from another CA, or for another name, fails.
    let plaintext = PgConnection::connect(&postgres.url("disable")).await;
    assert!(plaintext.is_err(), "plaintext is refused by pg_hba");
    let stranger = TestTlsFiles::new();
    let other_ca = verify_full.replace(
        &postgres.files().path("ca.crt").display().to_string(),
        &stranger.path("ca.crt").display().to_string(),
    );
    assert!(PgConnection::connect(&other_ca).await.is_err(), "an unknown CA is refused");
    let other_name = verify_full.replace("@localhost:", "@127.0.0.2:");
    assert!(PgConnection::connect(&other_name).await.is_err(), "a name the certificate lacks is refused");
}

/// A bus on the TLS Redis, trusting the test CA, as a service configured with
/// `REDIS_URL=rediss://…` and `FANFARE_REDIS_CA_FILE` opens it.
async fn rediss_bus(namespace: &str) -> Arc<dyn UpdateBus> {
    let redis = TlsRedis::shared();
    let dependencies = DependencyConfig {
        redis_url: Some(redis.url()),
        redis_ca_file: Some(redis.files().path("ca.crt")),
        redis_namespace: namespace.to_owned(),
        ..DependencyConfig::default()
    };
    fanfare_bus::open_configured_bus(&dependencies).await.expect("the bus opens")
}

#[tokio::test]
async fn the_bus_publishes_and_subscribes_over_rediss() {
    let bus = rediss_bus("tls-round-trip").await;
    let mut subscriber = bus.subscriber().await.expect("a subscriber connects over TLS");
    subscriber.subscribe("fanfare:group:1").await.expect("SUBSCRIBE over TLS");
    bus.publish("fanfare:group:1", Bytes::from_static(b"over TLS")).await.expect("PUBLISH over TLS");
    let event = tokio::time::timeout(EVENTUALLY, subscriber.recv()).await.expect("an event in time");
    assert_eq!(
        event,
        Some(BusEvent::Message { channel: "fanfare:group:1".to_owned(), payload: Bytes::from_static(b"over TLS") })
    );

    // Without the test CA (the system's roots) the server's certificate is refused.
    let untrusting = fanfare_bus::open_bus(Some(&TlsRedis::shared().url()), "tls-refused").await.expect("opens lazily");
    let refused = untrusting.publish("fanfare:group:1", Bytes::from_static(b"refused")).await;
    assert!(refused.is_err(), "{refused:?}");
}

/// The bus conformance suite on the TLS Redis.
mod rediss_conformance {
    use std::sync::Arc;

    use async_trait::async_trait;
    use fanfare_bus::UpdateBus;
    use fanfare_bus::conformance::BusFactory;

    /// A new bus with its own connections per call, in a namespace of its own.
    struct RedissBusFactory;

    #[async_trait]
    impl BusFactory for RedissBusFactory {
        async fn bus(&self, queue_capacity: usize) -> Arc<dyn UpdateBus> {
            let redis = fanfare_testkit::tls_servers::TlsRedis::shared();
            let root_ca_pem = std::fs::read(redis.files().path("ca.crt")).expect("the CA file");
            let config = fanfare_bus::RedisBusConfig {
                queue_capacity,
                root_ca_pem: Some(root_ca_pem),
                ..fanfare_bus::RedisBusConfig::new(redis.url())
            };
            Arc::new(fanfare_bus::RedisBus::open(config).await.expect("open the bus"))
        }
    }

    fanfare_bus::bus_conformance_tests!(RedissBusFactory);
}
