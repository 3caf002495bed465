//! The service around the rules (docs/fanout.md, "Who is acting" and "Limits and errors"):
//! the service token and health, the per-user rate limit on follows and unfollows, and a
//! database outage answered UNAVAILABLE.

use std::sync::Arc;
use std::time::Duration;

use fanfare_fanout::FanoutBackends;
use fanfare_fanout::follows::store::PostgresFollowStore;
use fanfare_proto::fanout::v1 as pb;
use fanfare_testkit::{Storage, as_user};
use fanfare_tests::fanout::{self, Client, TestFanout, counts, follow, start_with};
use fanfare_tests::{expect_code, on_every_storage};
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_types::StatusExt;

on_every_storage!(
    the_service_token_is_required_on_every_call_but_health,
    follows_beyond_the_rate_limit_are_refused_with_a_retry_delay,
);

/// A Follow request acting as user 1, with `authorization` set when given.
fn follow_request(authorization: Option<&str>) -> tonic::Request<pb::FollowRequest> {
    let mut request = as_user(1, pb::FollowRequest { creator_user_id: 2 });
    if let Some(value) = authorization {
        request.metadata_mut().insert("authorization", value.parse().expect("valid metadata"));
    }
    request
}

/// Waits (bounded) until health reports `wanted` for `service`.
async fn wait_for_health(health: &mut HealthClient<tonic::transport::Channel>, service: &str, wanted: ServingStatus) {
    let request = HealthCheckRequest { service: service.to_owned() };
    let mut statuses = health.watch(request).await.expect("health answers without a token").into_inner();
    let reached = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(reply) = statuses.message().await.expect("a health reply") {
            if reply.status == wanted as i32 {
                return true;
            }
        }
        false
    })
    .await
    .expect("health reports within the bound");
    assert!(reached, "{service:?} reports {wanted:?}");
}

async fn the_service_token_is_required_on_every_call_but_health(storage: Storage) {
    let (service, mut client) = start_with(storage, |config| {
        config.server.service_token = Some("s3cret".to_owned());
        config.server.allow_unauthenticated = false;
    })
    .await;

    for authorization in [None, Some("Bearer wrong"), Some("Bearer s3cre"), Some("Basic s3cret"), Some("s3cret")] {
        expect_code(client.follow(follow_request(authorization)).await, Code::Unauthenticated);
    }
    let mut counts_request = as_user(1, pb::GetFollowCountsRequest { user_ids: vec![1, 2] });
    expect_code(client.get_follow_counts(counts_request).await, Code::Unauthenticated);
    counts_request = as_user(1, pb::GetFollowCountsRequest { user_ids: vec![1, 2] });
    counts_request.metadata_mut().insert("authorization", "Bearer s3cret".parse().expect("valid metadata"));
    let answered = client.get_follow_counts(counts_request).await.expect("the right token is accepted");
    let untouched: Vec<(i64, i64)> =
        answered.into_inner().counts.iter().map(|count| (count.followers, count.following)).collect();
    assert_eq!(untouched, [(0, 0), (0, 0)], "refused calls changed nothing");

    let followed = client.follow(follow_request(Some("Bearer s3cret"))).await.expect("the right token is accepted");
    assert!(followed.into_inner().created);

    // Health needs no token; it turns SERVING once the store has answered a probe.
    let mut health = HealthClient::new(service.channel().await.expect("connected"));
    for name in [fanfare_fanout::SERVICE_NAME, ""] {
        wait_for_health(&mut health, name, ServingStatus::Serving).await;
        let checked = health.check(HealthCheckRequest { service: name.to_owned() }).await;
        assert_eq!(checked.expect("check answers").into_inner().status, ServingStatus::Serving as i32);
    }
    service.stop().await.expect("the service stops cleanly");
}

async fn follows_beyond_the_rate_limit_are_refused_with_a_retry_delay(storage: Storage) {
    let (_service, mut client) = start_with(storage, |config| {
        config.limits.user_changes_per_second = 1;
        config.limits.user_changes_burst = 2;
    })
    .await;

    // The burst allows two changes; keep following until refused. A refill of one change a
    // second cannot keep up with back-to-back calls, so a refusal comes within a few.
    let mut accepted = 0;
    let mut refusal = None;
    for creator in 100..150 {
        match client.follow(as_user(1, pb::FollowRequest { creator_user_id: creator })).await {
            Ok(_) => accepted += 1,
            Err(status) => {
                refusal = Some((creator, status));
                break;
            }
        }
    }
    let (refused_creator, status) = refusal.expect("back-to-back follows are refused");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    let delay = status.get_error_details().retry_info().and_then(|retry| retry.retry_delay);
    let delay = delay.expect("a RetryInfo delay");
    assert!(delay > Duration::ZERO && delay <= Duration::from_secs(1), "{delay:?}");
    assert_eq!(counts(&mut client, 1).await, (0, accepted), "the refused follow did nothing");
    assert_eq!(counts(&mut client, refused_creator).await, (0, 0));

    // Unfollows share the budget; reads are not limited; other users have their own.
    let unfollow = client.unfollow(as_user(1, pb::UnfollowRequest { creator_user_id: 100 })).await;
    expect_code(unfollow, Code::ResourceExhausted);
    for _ in 0..20 {
        counts(&mut client, 1).await;
    }
    follow(&mut client, 2, 100).await;

    tokio::time::sleep(delay).await;
    let retried = client.follow(as_user(1, pb::FollowRequest { creator_user_id: refused_creator })).await;
    assert!(retried.expect("a retry after the delay is accepted").into_inner().created);
}

/// A Postgres nobody listens on: port 1 on loopback refuses at once.
const DEAD_DATABASE: &str = "postgres://postgres@127.0.0.1:1/fanfare";

#[tokio::test]
async fn a_dead_database_answers_unavailable_and_health_not_serving() {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .acquire_timeout(Duration::from_secs(1))
        .connect_lazy(DEAD_DATABASE)
        .expect("a lazy pool never connects up front");
    let store = Arc::new(PostgresFollowStore::from_pool(pool.clone()));
    let config = fanout::dev_config(fanout::NOBODY_URL, fanout::NOBODY_URL);
    let mut backends = FanoutBackends::in_memory(fanfare_bus::open_bus(None, "").await.expect("a memory bus"));
    backends.follows = store;
    backends.jobs = Arc::new(fanfare_fanout::jobs::PostgresJobStore::from_pool(pool));
    let service = TestFanout::serve(config, backends, None).await.expect("the service starts");
    let mut client: Client = service.client().await.expect("a client connects");

    let status =
        expect_code(client.follow(as_user(1, pb::FollowRequest { creator_user_id: 2 })).await, Code::Unavailable);
    assert!(status.message().contains("retry"), "{}", status.message());
    assert!(status.get_error_details().retry_info().is_some(), "UNAVAILABLE carries a retry delay");
    let unfollow = client.unfollow(as_user(1, pb::UnfollowRequest { creator_user_id: 2 })).await;
    expect_code(unfollow, Code::Unavailable);
    let listing = client.list_followers(as_user(1, pb::ListFollowersRequest::default())).await;
    expect_code(listing, Code::Unavailable);
    let listing = client.list_following(as_user(1, pb::ListFollowingRequest::default())).await;
    expect_code(listing, Code::Unavailable);
    let counted = client.get_follow_counts(as_user(1, pb::GetFollowCountsRequest { user_ids: vec![1] })).await;
    expect_code(counted, Code::Unavailable);
    let check = pb::CheckFollowsRequest { follower_user_id: 0, creator_user_ids: vec![2] };
    expect_code(client.check_follows(as_user(1, check)).await, Code::Unavailable);

    // Fan-out jobs live in the same database: every job call is UNAVAILABLE too.
    let start = pb::StartFanoutJobRequest {
        kind: pb::FanoutJobKind::BroadcastNotification.into(),
        payload_ref: "hello".into(),
        idempotency_key: "k".into(),
        rate_limit_per_second: 0,
    };
    expect_code(client.start_fanout_job(as_user(1, start)).await, Code::Unavailable);
    expect_code(client.get_fanout_job(as_user(1, pb::GetFanoutJobRequest { job_id: 1 })).await, Code::Unavailable);
    let jobs = client.list_fanout_jobs(as_user(1, pb::ListFanoutJobsRequest::default())).await;
    expect_code(jobs, Code::Unavailable);
    let cancel = client.cancel_fanout_job(as_user(1, pb::CancelFanoutJobRequest { job_id: 1 })).await;
    expect_code(cancel, Code::Unavailable);

    // Bad input is still refused as bad input: validation does not need the database.
    let own = client.follow(as_user(1, pb::FollowRequest { creator_user_id: 1 })).await;
    expect_code(own, Code::InvalidArgument);

    let mut health = HealthClient::new(service.channel().await.expect("connected"));
    let request = HealthCheckRequest { service: fanfare_fanout::SERVICE_NAME.to_owned() };
    let answer = health.check(request).await.expect("health answers even when the database is down");
    assert_eq!(answer.into_inner().status, ServingStatus::NotServing as i32);
    let liveness = health.check(HealthCheckRequest { service: String::new() }).await.expect("liveness answers");
    assert_eq!(liveness.into_inner().status, ServingStatus::Serving as i32, "the process itself is alive");
    service.stop().await.expect("the service stops cleanly");
}
