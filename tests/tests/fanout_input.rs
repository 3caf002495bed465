//! Bad input, field by field (docs/fanout.md, "Who is acting" and "Limits and errors"):
//! each refusal is INVALID_ARGUMENT naming the field (or UNAUTHENTICATED for a missing
//! user), and a refused call changes nothing.

use fanfare_core::identity::USER_ID_HEADER;
use fanfare_core::paging::Cursor;
use fanfare_proto::fanout::v1 as pb;
use fanfare_testkit::{Storage, as_user};
use fanfare_tests::fanout::{Client, Listing, counts, follow, page, start};
use fanfare_tests::{expect_field_violation, on_every_storage};
use tonic::{Code, Status};

on_every_storage!(
    every_rpc_needs_a_well_formed_acting_user,
    creator_ids_must_be_positive,
    listings_check_the_user_the_page_size_and_the_token,
    id_batches_hold_one_to_one_hundred_positive_ids,
);

/// A request whose `x-fanfare-user-id` is `user` verbatim, or absent.
fn request<T>(user: Option<&str>, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(value) = user {
        let value = value.parse().expect("valid ASCII metadata");
        request.metadata_mut().insert(USER_ID_HEADER, value);
    }
    request
}

/// Calls all 6 RPCs with well-formed messages, returning each outcome.
async fn call_every_rpc(client: &mut Client, user: Option<&str>) -> Vec<(&'static str, Result<(), Status>)> {
    let mut outcomes = Vec::new();
    macro_rules! call {
        ($method:ident, $message:expr) => {
            let outcome = client.$method(request(user, $message)).await.map(drop);
            outcomes.push((stringify!($method), outcome));
        };
    }
    call!(follow, pb::FollowRequest { creator_user_id: 7 });
    call!(unfollow, pb::UnfollowRequest { creator_user_id: 8 });
    call!(list_followers, pb::ListFollowersRequest { user_id: 7, ..Default::default() });
    call!(list_following, pb::ListFollowingRequest::default());
    call!(get_follow_counts, pb::GetFollowCountsRequest { user_ids: vec![7] });
    call!(check_follows, pb::CheckFollowsRequest { follower_user_id: 0, creator_user_ids: vec![7] });
    outcomes
}

async fn every_rpc_needs_a_well_formed_acting_user(storage: Storage) {
    let (_service, mut client) = start(storage).await;
    follow(&mut client, 1, 8).await;

    let missing = call_every_rpc(&mut client, None).await;
    assert_eq!(missing.len(), 6, "every RPC of the service");
    for (method, outcome) in missing {
        let status = outcome.expect_err(method);
        assert_eq!(status.code(), Code::Unauthenticated, "{method}: {status:?}");
    }
    for malformed in ["", "abc", "0", "-5", "1.5", "0x10", "99999999999999999999"] {
        for (method, outcome) in call_every_rpc(&mut client, Some(malformed)).await {
            let status = outcome.expect_err(method);
            assert_eq!(status.code(), Code::InvalidArgument, "{method} with {malformed:?}: {status:?}");
        }
    }
    assert_eq!(counts(&mut client, 7).await, (0, 0), "refused calls change nothing");
    assert_eq!(counts(&mut client, 8).await, (1, 0));

    for (method, outcome) in call_every_rpc(&mut client, Some("1")).await {
        outcome.unwrap_or_else(|status| panic!("{method} with a good user: {status:?}"));
    }
    assert_eq!(counts(&mut client, 7).await, (1, 0));
    assert_eq!(counts(&mut client, 8).await, (0, 0), "user 1 unfollowed 8");
}

async fn creator_ids_must_be_positive(storage: Storage) {
    let (_service, mut client) = start(storage).await;
    for creator_user_id in [0, -1, i64::MIN] {
        let refused = client.follow(as_user(1, pb::FollowRequest { creator_user_id })).await;
        expect_field_violation(refused, "creator_user_id");
        let refused = client.unfollow(as_user(1, pb::UnfollowRequest { creator_user_id })).await;
        expect_field_violation(refused, "creator_user_id");
    }
    assert_eq!(counts(&mut client, 1).await, (0, 0));
}

async fn listings_check_the_user_the_page_size_and_the_token(storage: Storage) {
    let (_service, mut client) = start(storage).await;
    for follower in 2..=4 {
        follow(&mut client, follower, 1).await;
    }
    for listing in [Listing::Followers, Listing::Following] {
        let bad_user = page(&mut client, listing, 1, -1, 10, String::new()).await;
        expect_field_violation(bad_user, "user_id");
        for page_size in [-1, 1_001, i32::MAX, i32::MIN] {
            let bad_size = page(&mut client, listing, 1, 1, page_size, String::new()).await;
            let status = expect_field_violation(bad_size, "page_size");
            assert!(status.message().contains("1000"), "the bounds are named: {}", status.message());
        }
        // A foreign or tampered token: not hex, a one-key token, a negative user id, a
        // time out of range.
        let tokens = [
            "not-a-token".to_owned(),
            Cursor(vec![1]).encode(),
            Cursor(vec![0, -7]).encode(),
            Cursor(vec![i64::MAX, 2]).encode(),
        ];
        for page_token in tokens {
            let bad_token = page(&mut client, listing, 1, 1, 10, page_token.clone()).await;
            expect_field_violation(bad_token, "page_token");
        }
        // Every bad field at once.
        let status = expect_field_violation(page(&mut client, listing, 1, -3, -3, "x".to_owned()).await, "user_id");
        assert!(status.message().contains("page_size") && status.message().contains("page_token"), "{status:?}");
        for page_size in [1, 1_000] {
            page(&mut client, listing, 1, 1, page_size, String::new()).await.expect("a size in bounds");
        }
    }
}

async fn id_batches_hold_one_to_one_hundred_positive_ids(storage: Storage) {
    let (_service, mut client) = start(storage).await;
    let too_many: Vec<i64> = (1..=101).collect();

    let counts_of = |user_ids: Vec<i64>| as_user(1, pb::GetFollowCountsRequest { user_ids });
    expect_field_violation(client.get_follow_counts(counts_of(vec![])).await, "user_ids");
    expect_field_violation(client.get_follow_counts(counts_of(too_many.clone())).await, "user_ids");
    let status = expect_field_violation(client.get_follow_counts(counts_of(vec![3, 4, 0, -2])).await, "user_ids[2]");
    assert!(status.message().contains("user_ids[3]"), "every bad id is named: {}", status.message());
    let hundred: Vec<i64> = (1..=100).collect();
    let answered = client.get_follow_counts(counts_of(hundred)).await.expect("100 ids").into_inner().counts;
    assert_eq!(answered.len(), 100);

    let check = |follower_user_id: i64, creator_user_ids: Vec<i64>| {
        as_user(1, pb::CheckFollowsRequest { follower_user_id, creator_user_ids })
    };
    expect_field_violation(client.check_follows(check(0, vec![])).await, "creator_user_ids");
    expect_field_violation(client.check_follows(check(0, too_many)).await, "creator_user_ids");
    expect_field_violation(client.check_follows(check(0, vec![5, -5])).await, "creator_user_ids[1]");
    expect_field_violation(client.check_follows(check(-1, vec![5])).await, "follower_user_id");
    let repeated = vec![5; 100];
    let checks = client.check_follows(check(2, repeated)).await.expect("100 repeated ids").into_inner().checks;
    assert_eq!(checks.len(), 1, "a repeated id is answered once");
}
