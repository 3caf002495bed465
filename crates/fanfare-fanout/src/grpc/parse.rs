//! Wire requests to validated domain values. Every bad field is reported at once, by its
//! proto name, as a field violation.

use chrono::DateTime;
use fanfare_core::ids::UserId;
use fanfare_core::paging::{Cursor, PageSize};
use fanfare_core::validation::{FieldViolation, InvalidRequest, Violations, distinct_list};
use fanfare_proto::fanout::v1 as pb;

use crate::domain::FollowKey;
use crate::domain::rules::CREATOR_FIELD;

/// The creator of Follow and Unfollow.
pub fn creator(raw: i64) -> Result<UserId, InvalidRequest> {
    Ok(UserId::parse(CREATOR_FIELD, raw)?)
}

/// A user id where 0 means the caller (`None`).
fn user_or_caller(field: &str, raw: i64, violations: &mut Violations) -> Option<Option<UserId>> {
    if raw == 0 {
        return Some(None);
    }
    violations.check(UserId::parse(field, raw)).map(Some)
}

/// The position a page token holds: (followed_at in microseconds, the other user's id).
fn follow_key(cursor: &Cursor) -> Result<FollowKey, FieldViolation> {
    let malformed = || FieldViolation::new("page_token", "is not a token returned by this method");
    let followed_at = DateTime::from_timestamp_micros(cursor.0[0]).ok_or_else(malformed)?;
    let user = UserId::parse("page_token", cursor.0[1]).map_err(|_| malformed())?;
    Ok(FollowKey { followed_at, user })
}

/// A listing of one user's edges: whose (0 = the caller), the page size and the position.
pub fn listing(
    user_id: i64,
    page_size: i32,
    page_token: &str,
) -> Result<(Option<UserId>, PageSize, Option<FollowKey>), InvalidRequest> {
    let mut violations = Violations::new();
    let user = user_or_caller("user_id", user_id, &mut violations);
    let size = violations.check(PageSize::parse_default("page_size", page_size));
    let before = match violations.check(Cursor::decode("page_token", page_token, 2)) {
        Some(Some(cursor)) => violations.check(follow_key(&cursor)).map(Some),
        Some(None) => Some(None),
        None => None,
    };
    violations.finish_with((|| Some((user?, size?, before?)))())
}

/// A list of user ids: 1 to `max` entries (counted before repeats are dropped), refused on
/// its length before any id is parsed; each positive; repeats are dropped, order kept.
fn id_batch(field: &str, raw: &[i64], max: usize, violations: &mut Violations) -> Option<Vec<UserId>> {
    distinct_list(field, raw, (1, max), "ids", |name, value| UserId::parse(name, *value), violations)
}

/// GetFollowCounts.
pub fn get_follow_counts(request: &pb::GetFollowCountsRequest, max: usize) -> Result<Vec<UserId>, InvalidRequest> {
    let mut violations = Violations::new();
    let users = id_batch("user_ids", &request.user_ids, max, &mut violations);
    violations.finish_with(users)
}

/// CheckFollows: the follower (0 = the caller) and the creators.
pub fn check_follows(
    request: &pb::CheckFollowsRequest,
    max: usize,
) -> Result<(Option<UserId>, Vec<UserId>), InvalidRequest> {
    let mut violations = Violations::new();
    let follower = user_or_caller("follower_user_id", request.follower_user_id, &mut violations);
    let creators = id_batch("creator_user_ids", &request.creator_user_ids, max, &mut violations);
    violations.finish_with((|| Some((follower?, creators?)))())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(error: InvalidRequest) -> Vec<String> {
        error.violations().iter().map(|violation| violation.field.clone()).collect()
    }

    #[test]
    fn listings_read_zero_as_the_caller_and_name_every_bad_field() {
        let (user, size, before) = listing(0, 0, "").expect("defaults");
        assert_eq!((user, size.get(), before), (None, 100, None));
        let refused = listing(-1, 1_001, "nonsense").unwrap_err();
        assert_eq!(fields(refused), ["user_id", "page_size", "page_token"]);
    }

    #[test]
    fn page_tokens_round_trip_and_refuse_impossible_positions() {
        let key = FollowKey {
            followed_at: DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap(),
            user: UserId::from_trusted(9),
        };
        let token = Cursor(vec![key.followed_at.timestamp_micros(), key.user.get()]).encode();
        assert_eq!(listing(5, 10, &token).expect("a token").2, Some(key));
        for bad in [Cursor(vec![0, -4]), Cursor(vec![i64::MAX, 3]), Cursor(vec![1])] {
            assert_eq!(fields(listing(5, 10, &bad.encode()).unwrap_err()), ["page_token"], "{bad:?}");
        }
    }

    #[test]
    fn batches_hold_one_to_max_positive_ids_and_drop_repeats_in_order() {
        let request = pb::GetFollowCountsRequest { user_ids: vec![3, 1, 3, 2, 1] };
        let users: Vec<i64> = get_follow_counts(&request, 100).unwrap().iter().map(|user| user.get()).collect();
        assert_eq!(users, [3, 1, 2]);
        let empty = pb::GetFollowCountsRequest { user_ids: vec![] };
        assert_eq!(fields(get_follow_counts(&empty, 100).unwrap_err()), ["user_ids"]);
        let too_many = pb::GetFollowCountsRequest { user_ids: (1..=101).collect() };
        assert_eq!(fields(get_follow_counts(&too_many, 100).unwrap_err()), ["user_ids"]);
        let check = pb::CheckFollowsRequest { follower_user_id: -2, creator_user_ids: vec![4, 0] };
        assert_eq!(fields(check_follows(&check, 100).unwrap_err()), ["follower_user_id", "creator_user_ids[1]"]);
    }
}
