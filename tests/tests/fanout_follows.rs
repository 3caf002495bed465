//! The follow graph through gRPC (docs/fanout.md, "Rules"): following and unfollowing are
//! idempotent and counted, nobody follows themselves, the following limit, newest-first
//! keyset listings anyone may read, counters and batch checks.

use std::collections::HashSet;

use fanfare_core::status::ErrorReason;
use fanfare_proto::fanout::v1 as pb;
use fanfare_testkit::{Storage, as_user};
use fanfare_tests::fanout::{Listing, counts, follow, page, start, start_unthrottled, start_with, unfollow, walk};
use fanfare_tests::{expect_field_violation, expect_reason, on_every_storage};
use tonic::Code;
use tonic_types::StatusExt;

on_every_storage!(
    follow_creates_an_edge_once_and_counts_it,
    unfollow_removes_the_edge_once_and_uncounts_it,
    nobody_follows_or_unfollows_themselves,
    followers_are_listed_newest_first_by_anyone,
    following_is_listed_newest_first_across_pages,
    a_page_holds_one_hundred_by_default,
    follow_counts_answer_each_distinct_user_in_the_order_asked,
    check_follows_answers_each_distinct_creator_in_the_order_asked,
    the_following_limit_is_resource_exhausted_until_an_unfollow,
);

/// The seconds and nanos of a follow's time.
fn followed_at(follow: &pb::Follow) -> (i64, i32) {
    let time = follow.followed_at.as_ref().expect("every edge has a time");
    (time.seconds, time.nanos)
}

async fn follow_creates_an_edge_once_and_counts_it(storage: Storage) {
    let (_service, mut client) = start(storage).await;
    let first = follow(&mut client, 2, 1).await;
    assert!(first.created);
    let edge = first.follow.expect("the edge is returned");
    assert_eq!((edge.follower_user_id, edge.creator_user_id), (2, 1));
    let (_, nanos) = followed_at(&edge);
    assert_eq!(nanos % 1_000, 0, "times are kept to the microsecond");

    let again = follow(&mut client, 2, 1).await;
    assert!(!again.created, "following again changes nothing");
    assert_eq!(again.follow, Some(edge), "the original edge, with its original time");
    assert_eq!(counts(&mut client, 1).await, (1, 0));
    assert_eq!(counts(&mut client, 2).await, (0, 1));

    // Edges are one-way: the creator following back is a second edge.
    assert!(follow(&mut client, 1, 2).await.created);
    assert_eq!(counts(&mut client, 1).await, (1, 1));
    assert_eq!(counts(&mut client, 2).await, (1, 1));
}

async fn unfollow_removes_the_edge_once_and_uncounts_it(storage: Storage) {
    let (_service, mut client) = start(storage).await;
    follow(&mut client, 2, 1).await;
    follow(&mut client, 3, 1).await;
    assert!(unfollow(&mut client, 2, 1).await);
    assert!(!unfollow(&mut client, 2, 1).await, "unfollowing again removes nothing");
    assert!(!unfollow(&mut client, 4, 1).await, "nor does unfollowing someone never followed");
    assert_eq!(counts(&mut client, 1).await, (1, 0));
    assert_eq!(counts(&mut client, 2).await, (0, 0));
    let followers = walk(&mut client, Listing::Followers, 1, 0, 10).await;
    let ids: Vec<i64> = followers.iter().flatten().map(|edge| edge.follower_user_id).collect();
    assert_eq!(ids, [3]);

    let refollowed = follow(&mut client, 2, 1).await;
    assert!(refollowed.created, "a follow after an unfollow is a new edge");
    assert_eq!(counts(&mut client, 1).await, (2, 0));
}

async fn nobody_follows_or_unfollows_themselves(storage: Storage) {
    let (_service, mut client) = start(storage).await;
    let refused = client.follow(as_user(5, pb::FollowRequest { creator_user_id: 5 })).await;
    let status = expect_field_violation(refused, "creator_user_id");
    assert!(status.message().contains("themselves"), "{}", status.message());
    let refused = client.unfollow(as_user(5, pb::UnfollowRequest { creator_user_id: 5 })).await;
    expect_field_violation(refused, "creator_user_id");
    assert_eq!(counts(&mut client, 5).await, (0, 0), "nothing was counted");
    let check = pb::CheckFollowsRequest { follower_user_id: 0, creator_user_ids: vec![5] };
    let checks = client.check_follows(as_user(5, check)).await.expect("CheckFollows succeeds").into_inner();
    assert!(!checks.checks[0].following, "asking whether one follows oneself is fine: no");
}

/// 12 users follow creator 1 in a shuffled order; each follow gets a later time.
const SHUFFLED_FOLLOWERS: [i64; 12] = [17, 3, 99, 42, 8, 61, 25, 4, 77, 12, 33, 50];

async fn followers_are_listed_newest_first_by_anyone(storage: Storage) {
    let (_service, mut client) = start(storage).await;
    for follower in SHUFFLED_FOLLOWERS {
        follow(&mut client, follower, 1).await;
    }
    follow(&mut client, 2, 7).await; // another creator's follower
    let newest_first: Vec<i64> = SHUFFLED_FOLLOWERS.iter().rev().copied().collect();

    for page_size in [1, 5, 12, 13] {
        // A stranger may read the graph; the creator reads their own with user_id 0.
        for (actor, user_id) in [(999, 1), (1, 0)] {
            let pages = walk(&mut client, Listing::Followers, actor, user_id, page_size).await;
            let edges: Vec<&pb::Follow> = pages.iter().flatten().collect();
            let ids: Vec<i64> = edges.iter().map(|edge| edge.follower_user_id).collect();
            assert_eq!(ids, newest_first, "pages of {page_size} as {actor}");
            assert!(edges.iter().all(|edge| edge.creator_user_id == 1));
            let times: Vec<(i64, i32)> = edges.iter().map(|edge| followed_at(edge)).collect();
            assert!(times.windows(2).all(|pair| pair[0] >= pair[1]), "newest first: {times:?}");
            let (last, full) = pages.split_last().expect("a page");
            assert!(full.iter().all(|page| page.len() == page_size as usize), "only the last page is short");
            assert!(!last.is_empty(), "no empty trailing page");
        }
    }
    let nobody = walk(&mut client, Listing::Followers, 1, 500, 10).await;
    assert_eq!(nobody, [Vec::<pb::Follow>::new()], "a user nobody follows has one empty page");
}

async fn following_is_listed_newest_first_across_pages(storage: Storage) {
    let (_service, mut client) = start_unthrottled(storage).await;
    for creator in SHUFFLED_FOLLOWERS {
        follow(&mut client, 1, creator).await;
    }
    unfollow(&mut client, 1, 42).await;
    follow(&mut client, 1, 42).await; // now the newest
    let mut expected: Vec<i64> = SHUFFLED_FOLLOWERS.iter().rev().copied().filter(|creator| *creator != 42).collect();
    expected.insert(0, 42);

    for (actor, user_id) in [(1, 0), (2, 1)] {
        let pages = walk(&mut client, Listing::Following, actor, user_id, 5).await;
        assert_eq!(pages.len(), 3);
        let ids: Vec<i64> = pages.iter().flatten().map(|edge| edge.creator_user_id).collect();
        assert_eq!(ids, expected);
        assert!(pages.iter().flatten().all(|edge| edge.follower_user_id == 1));
    }
    let distinct: HashSet<i64> = expected.iter().copied().collect();
    assert_eq!(distinct.len(), SHUFFLED_FOLLOWERS.len());
}

async fn a_page_holds_one_hundred_by_default(storage: Storage) {
    let (_service, mut client) = start(storage).await;
    for follower in 2..=102 {
        follow(&mut client, follower, 1).await;
    }
    let (first, token) = page(&mut client, Listing::Followers, 1, 1, 0, String::new()).await.expect("a page");
    assert_eq!(first.len(), 100);
    assert!(!token.is_empty());
    let (rest, last_token) = page(&mut client, Listing::Followers, 1, 1, 0, token).await.expect("a page");
    assert_eq!(rest.iter().map(|edge| edge.follower_user_id).collect::<Vec<_>>(), [2]);
    assert!(last_token.is_empty());
    let (everything, _) = page(&mut client, Listing::Followers, 1, 1, 1_000, String::new()).await.expect("a page");
    assert_eq!(everything.len(), 101);
}

async fn follow_counts_answer_each_distinct_user_in_the_order_asked(storage: Storage) {
    let (_service, mut client) = start(storage).await;
    for follower in 2..=6 {
        follow(&mut client, follower, 1).await;
    }
    follow(&mut client, 1, 2).await;
    let request = pb::GetFollowCountsRequest { user_ids: vec![404, 2, 1, 2, 404] };
    let response = client.get_follow_counts(as_user(9, request)).await.expect("GetFollowCounts succeeds");
    let answered: Vec<(i64, i64, i64)> =
        response.into_inner().counts.iter().map(|count| (count.user_id, count.followers, count.following)).collect();
    assert_eq!(answered, [(404, 0, 0), (2, 1, 1), (1, 5, 1)], "repeats answered once, in first-asked order");
}

async fn check_follows_answers_each_distinct_creator_in_the_order_asked(storage: Storage) {
    let (_service, mut client) = start(storage).await;
    let since_3 = follow(&mut client, 9, 3).await.follow.expect("an edge");
    let since_1 = follow(&mut client, 9, 1).await.follow.expect("an edge");
    follow(&mut client, 8, 2).await;

    let asked = vec![2, 3, 4, 1, 3];
    for (actor, follower_user_id) in [(9, 0), (100, 9)] {
        let request = pb::CheckFollowsRequest { follower_user_id, creator_user_ids: asked.clone() };
        let response = client.check_follows(as_user(actor, request)).await.expect("CheckFollows succeeds");
        let checks = response.into_inner().checks;
        let expected = vec![
            pb::FollowCheck { creator_user_id: 2, following: false, followed_at: None },
            pb::FollowCheck { creator_user_id: 3, following: true, followed_at: since_3.followed_at },
            pb::FollowCheck { creator_user_id: 4, following: false, followed_at: None },
            pb::FollowCheck { creator_user_id: 1, following: true, followed_at: since_1.followed_at },
        ];
        assert_eq!(checks, expected, "as {actor}");
    }
}

async fn the_following_limit_is_resource_exhausted_until_an_unfollow(storage: Storage) {
    let (_service, mut client) = start_with(storage, |config| config.limits.max_following = 3).await;
    for creator in [10, 11, 12] {
        follow(&mut client, 1, creator).await;
    }
    let refused = client.follow(as_user(1, pb::FollowRequest { creator_user_id: 13 })).await;
    let status = expect_reason(refused, Code::ResourceExhausted, ErrorReason::FollowingLimit);
    assert!(status.message().contains('3'), "the limit is named: {}", status.message());
    let details = status.get_error_details();
    assert!(details.quota_failure().is_some(), "a QuotaFailure detail: {status:?}");
    assert!(details.retry_info().is_none(), "waiting does not help a limit: {status:?}");
    assert_eq!(counts(&mut client, 1).await, (0, 3));
    assert_eq!(counts(&mut client, 13).await, (0, 0), "the refused follow counted nothing");

    assert!(!follow(&mut client, 1, 11).await.created, "an existing edge is returned at the limit");
    assert!(follow(&mut client, 2, 13).await.created, "other users have their own limit");
    assert!(unfollow(&mut client, 1, 10).await);
    assert!(follow(&mut client, 1, 13).await.created, "an unfollow makes room");
    assert_eq!(counts(&mut client, 1).await, (0, 3));
}
