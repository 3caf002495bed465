//! The system under test: the real groups service on port 0 over a fresh Postgres database,
//! a few HTTP/2 connections to it, and a separate sqlx pool on the same database for the
//! raw-statement baseline. Each method is one call of the workload.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use chrono::{DateTime, SubsecRound as _, Utc};
use fanfare_core::client::once_more_if_unprocessed;
use fanfare_core::config::DependencyConfig;
use fanfare_groups::GroupsConfig;
use fanfare_groups::domain::Role;
use fanfare_groups::store::PostgresGroupStore;
use fanfare_proto::common::v1::GroupKind;
use fanfare_proto::groups::v1 as pb;
use fanfare_proto::groups::v1::group_service_client::GroupServiceClient;
use fanfare_testkit::{TestDatabase, as_user};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

/// The user who creates both groups (and so is member 1 of the audience group).
pub(super) const OWNER: i64 = 1;

/// The membership lookup the store makes, issued raw for the baseline.
const RAW_LOOKUP: &str = "SELECT group_id, user_id, role, joined_at, muted_until \
                          FROM groups.members WHERE group_id = $1 AND user_id = $2";

/// The single-row insert a join is built on, issued raw for the baseline.
const RAW_INSERT: &str = "INSERT INTO groups.members (group_id, user_id, role, joined_at) VALUES ($1, $2, $3, $4)";

/// The row shape the raw lookup decodes, as the store does.
type MemberRow = (i64, i64, i16, DateTime<Utc>, Option<DateTime<Utc>>);

/// How the target is sized.
#[derive(Debug, Clone, Copy)]
pub(super) struct TargetSize {
    /// Connections in the service's pool, and in the baseline's.
    pub pool_size: u32,
    /// HTTP/2 connections the load generator spreads its calls over.
    pub channels: usize,
}

/// The running service, its clients, the baseline pool and the two groups.
pub(super) struct Target {
    /// The BROADCAST group filled through the API.
    pub audience: i64,
    /// A second group in the same table that only the raw baseline inserts into.
    pub baseline_group: i64,
    clients: Vec<GroupServiceClient<Channel>>,
    raw: PgPool,
    shutdown: CancellationToken,
    server: JoinHandle<anyhow::Result<()>>,
    // Dropped last: dropping it drops the database.
    database: TestDatabase,
}

impl Target {
    /// Creates and migrates a fresh database, starts the service over it with the per-user
    /// change limit off, connects, and creates the two groups.
    pub(super) async fn start(size: TargetSize) -> anyhow::Result<Self> {
        let database = TestDatabase::create().await?;
        let store = PostgresGroupStore::connect(&database.url(), size.pool_size).await?;
        PostgresGroupStore::migrate(store.pool()).await?;

        let mut config = GroupsConfig::for_dev(DependencyConfig::default());
        // Every joiner is a different user, but the owner creates both groups and the
        // limit is not what is measured.
        config.limits.user_changes_per_second = 0;
        let listener = TcpListener::bind("127.0.0.1:0").await.context("binding the groups service to 127.0.0.1:0")?;
        let addr = listener.local_addr().context("reading the bound address")?;
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(fanfare_groups::serve(config, Arc::new(store), listener, shutdown.clone()));

        let clients = connect_clients(addr, size.channels).await?;
        let raw = PgPoolOptions::new()
            .max_connections(size.pool_size)
            .connect_with(database.options())
            .await
            .context("connecting the baseline pool")?;
        let mut target = Self { audience: 0, baseline_group: 0, clients, raw, shutdown, server, database };
        target.audience = target.create_broadcast("bench audience").await?;
        target.baseline_group = target.create_broadcast("raw baseline").await?;
        Ok(target)
    }

    async fn create_broadcast(&self, title: &str) -> anyhow::Result<i64> {
        let request =
            pb::CreateGroupRequest { kind: GroupKind::Broadcast as i32, title: title.to_owned(), ..Default::default() };
        let response = self
            .client(0)
            .create_group(as_user(OWNER, request))
            .await
            .with_context(|| format!("creating the {title} group"))?;
        response.into_inner().group.map(|group| group.group_id).context("CreateGroup answered without a group")
    }

    /// The client for call `number`, spreading calls over the connections.
    fn client(&self, number: u64) -> GroupServiceClient<Channel> {
        let index = usize::try_from(number).unwrap_or(0) % self.clients.len();
        self.clients[index].clone()
    }

    /// `user` joins the audience group with `JoinGroup`; anything but JOINED fails.
    pub(super) async fn join(&self, user: i64) -> anyhow::Result<()> {
        let request = pb::JoinGroupRequest { group_id: self.audience };
        let client = self.client(user.unsigned_abs());
        let response = once_more_if_unprocessed(|| {
            let mut client = client.clone();
            async move { client.join_group(as_user(user, request)).await }
        })
        .await
        .with_context(|| format!("JoinGroup as user {user}"))?
        .into_inner();
        anyhow::ensure!(
            response.outcome == pb::JoinOutcome::Joined as i32,
            "JoinGroup as user {user} answered outcome {} instead of JOINED",
            response.outcome
        );
        Ok(())
    }

    /// `user` reads their own membership of the audience group with `GetMembership`.
    pub(super) async fn lookup(&self, call: u64, user: i64) -> anyhow::Result<()> {
        let request = pb::GetMembershipRequest { group_id: self.audience, user_id: 0 };
        let client = self.client(call);
        let response = once_more_if_unprocessed(|| {
            let mut client = client.clone();
            async move { client.get_membership(as_user(user, request)).await }
        })
        .await
        .with_context(|| format!("GetMembership as user {user}"))?
        .into_inner();
        let found = response.membership.map(|membership| membership.user_id);
        anyhow::ensure!(found == Some(user), "GetMembership as user {user} answered {found:?}");
        Ok(())
    }

    /// Baseline of a join: one INSERT of a member row into the baseline group, as its own
    /// (autocommit, durable) transaction.
    pub(super) async fn raw_insert(&self, user: i64) -> anyhow::Result<()> {
        sqlx::query(RAW_INSERT)
            .bind(self.baseline_group)
            .bind(user)
            .bind(Role::Member.code())
            .bind(Utc::now().trunc_subsecs(6))
            .execute(&self.raw)
            .await
            .with_context(|| format!("raw insert of user {user}"))?;
        Ok(())
    }

    /// Baseline of a lookup: the primary-key SELECT of `user`'s audience membership.
    pub(super) async fn raw_lookup(&self, user: i64) -> anyhow::Result<()> {
        let row: Option<MemberRow> = sqlx::query_as(RAW_LOOKUP)
            .bind(self.audience)
            .bind(user)
            .fetch_optional(&self.raw)
            .await
            .with_context(|| format!("raw lookup of user {user}"))?;
        anyhow::ensure!(row.is_some(), "raw lookup found no membership of user {user}");
        Ok(())
    }

    /// On-disk size of `groups.members` (heap and each index) and `groups.outbox`, with
    /// the member rows counted.
    pub(super) async fn storage(&self) -> anyhow::Result<Storage> {
        let relations: Vec<(String, i64)> = sqlx::query_as(
            "SELECT 'groups.members (heap)', pg_relation_size('groups.members') \
             UNION ALL \
             SELECT i.indexrelid::regclass::text || ' (index)', pg_relation_size(i.indexrelid) \
             FROM pg_index i WHERE i.indrelid = 'groups.members'::regclass \
             UNION ALL \
             SELECT 'groups.members (total)', pg_total_relation_size('groups.members') \
             UNION ALL \
             SELECT 'groups.outbox (total)', pg_total_relation_size('groups.outbox')",
        )
        .fetch_all(&self.raw)
        .await
        .context("reading relation sizes")?;
        let member_rows: i64 = sqlx::query_scalar("SELECT count(*) FROM groups.members")
            .fetch_one(&self.raw)
            .await
            .context("counting member rows")?;
        Ok(Storage { relations, member_rows })
    }

    /// Stops the service, closes the pool and drops the database.
    pub(super) async fn stop(self) -> anyhow::Result<()> {
        self.raw.close().await;
        self.shutdown.cancel();
        self.server.await.context("the groups service task panicked")?.context("the groups service failed")?;
        drop(self.database);
        Ok(())
    }
}

/// Sizes of the membership table and its neighbours at the end of the run.
#[derive(Debug, Clone)]
pub(super) struct Storage {
    /// `(relation, bytes)`.
    pub relations: Vec<(String, i64)>,
    /// Rows in `groups.members` (both groups).
    pub member_rows: i64,
}

async fn connect_clients(addr: SocketAddr, channels: usize) -> anyhow::Result<Vec<GroupServiceClient<Channel>>> {
    let mut clients = Vec::with_capacity(channels);
    for _ in 0..channels.max(1) {
        let channel = Channel::from_shared(format!("http://{addr}"))
            .context("building the service endpoint")?
            .tcp_nodelay(true)
            .connect()
            .await
            .with_context(|| format!("connecting to the groups service at {addr}"))?;
        clients.push(GroupServiceClient::new(channel));
    }
    Ok(clients)
}
