//! Wire requests to validated domain values, for the three parts of the service: the
//! follow graph, fan-out jobs and `Subscribe`'s resume positions. Every bad field is
//! reported at once, by its proto name, as a field violation.

use chrono::DateTime;
use fanfare_core::ids::{EventSeq, GroupId, UserId};
use fanfare_core::paging::{Cursor, PageSize, not_a_page_token};
use fanfare_core::validation::{FieldViolation, InvalidRequest, Violations, check_list_length, distinct_list};
use fanfare_proto::fanout::v1 as pb;

use crate::follows::domain::FollowKey;
use crate::follows::domain::rules::CREATOR_FIELD;
use crate::jobs::domain::{IdempotencyKey, JobId, JobKind, PayloadRef, Rate, StartJob};
use crate::live::Resume;
use crate::live::cursor::{self, Position};

// ---------------------------------------------------------------------------------------
// The follow graph

/// The creator of Follow and Unfollow.
pub(super) fn creator(raw: i64) -> Result<UserId, InvalidRequest> {
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
    let followed_at = DateTime::from_timestamp_micros(cursor.0[0]).ok_or_else(|| not_a_page_token("page_token"))?;
    let user = UserId::parse("page_token", cursor.0[1]).map_err(|_| not_a_page_token("page_token"))?;
    Ok(FollowKey { followed_at, user })
}

/// A validated ListFollowers or ListFollowing request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Listing {
    /// Whose edges: `None` for the caller's.
    pub(crate) user: Option<UserId>,
    /// The page size.
    pub(crate) size: PageSize,
    /// The position to continue before; `None` for the first page.
    pub(crate) before: Option<FollowKey>,
}

/// A listing of one user's edges: whose (0 = the caller), the page size and the position.
pub(crate) fn listing(user_id: i64, page_size: i32, page_token: &str) -> Result<Listing, InvalidRequest> {
    let mut violations = Violations::new();
    let user = user_or_caller("user_id", user_id, &mut violations);
    let size = violations.check(PageSize::parse_default("page_size", page_size));
    let before = match violations.check(Cursor::decode("page_token", page_token, 2)) {
        Some(Some(cursor)) => violations.check(follow_key(&cursor)).map(Some),
        Some(None) => Some(None),
        None => None,
    };
    violations.finish_with(|| Some(Listing { user: user?, size: size?, before: before? }))
}

/// A list of user ids: 1 to `max` entries (counted before repeats are dropped), refused on
/// its length before any id is parsed; each positive; repeats are dropped, order kept.
fn id_batch(field: &str, raw: &[i64], max: usize, violations: &mut Violations) -> Option<Vec<UserId>> {
    distinct_list(field, raw, (1, max), "ids", |name, value| UserId::parse(name, *value), violations)
}

/// GetFollowCounts.
pub(super) fn get_follow_counts(
    request: &pb::GetFollowCountsRequest,
    max: usize,
) -> Result<Vec<UserId>, InvalidRequest> {
    let mut violations = Violations::new();
    let users = id_batch("user_ids", &request.user_ids, max, &mut violations);
    violations.finish_with(|| users)
}

/// A validated CheckFollows request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CheckFollows {
    /// Whose follows: `None` for the caller's.
    pub(crate) follower: Option<UserId>,
    /// The creators asked about, distinct, in the request's order.
    pub(crate) creators: Vec<UserId>,
}

/// CheckFollows: the follower (0 = the caller) and the creators.
pub(crate) fn check_follows(request: &pb::CheckFollowsRequest, max: usize) -> Result<CheckFollows, InvalidRequest> {
    let mut violations = Violations::new();
    let follower = user_or_caller("follower_user_id", request.follower_user_id, &mut violations);
    let creators = id_batch("creator_user_ids", &request.creator_user_ids, max, &mut violations);
    violations.finish_with(|| Some(CheckFollows { follower: follower?, creators: creators? }))
}

// ---------------------------------------------------------------------------------------
// Fan-out jobs

/// The kind of a start request; `UNSPECIFIED` and unknown values are refused.
fn job_kind(raw: i32) -> Result<JobKind, FieldViolation> {
    JobKind::from_proto(raw).ok_or_else(|| {
        FieldViolation::new(
            "kind",
            format!(
                "must be FANOUT_JOB_KIND_NEW_GROUP_INVITATION or FANOUT_JOB_KIND_BROADCAST_NOTIFICATION (got {raw})"
            ),
        )
    })
}

/// StartFanoutJob, with the server's default and highest rates.
pub(super) fn start_fanout_job(
    request: &pb::StartFanoutJobRequest,
    default_rate: u32,
    max_rate: u32,
) -> Result<StartJob, InvalidRequest> {
    let mut violations = Violations::new();
    let kind = violations.check(job_kind(request.kind));
    let payload_ref = violations.check(PayloadRef::parse("payload_ref", &request.payload_ref));
    let idempotency_key = violations.check(IdempotencyKey::parse("idempotency_key", &request.idempotency_key));
    let rate =
        violations.check(Rate::parse("rate_limit_per_second", request.rate_limit_per_second, default_rate, max_rate));
    violations.finish_with(|| {
        Some(StartJob { kind: kind?, payload_ref: payload_ref?, idempotency_key: idempotency_key?, rate: rate? })
    })
}

/// A `job_id` field.
pub(super) fn job_id(raw: i64) -> Result<JobId, InvalidRequest> {
    Ok(JobId::parse("job_id", raw)?)
}

/// A validated ListFanoutJobs request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct JobListing {
    /// The page size.
    pub(crate) size: PageSize,
    /// The job to continue before; `None` for the first page.
    pub(crate) before: Option<JobId>,
}

/// ListFanoutJobs: the page size and the job to continue before.
pub(crate) fn job_listing(page_size: i32, page_token: &str) -> Result<JobListing, InvalidRequest> {
    let mut violations = Violations::new();
    let size = violations.check(PageSize::parse_default("page_size", page_size));
    let before = match violations.check(Cursor::decode("page_token", page_token, 1)) {
        Some(Some(cursor)) => violations
            .check(JobId::parse("page_token", cursor.0[0]).map_err(|_| not_a_page_token("page_token")))
            .map(Some),
        Some(None) => Some(None),
        None => None,
    };
    violations.finish_with(|| Some(JobListing { size: size?, before: before? }))
}

// ---------------------------------------------------------------------------------------
// Subscribe

/// The resume positions of a Subscribe request: the cursor's, overridden by the explicit
/// ones. Both are refused on their length before their entries are read.
pub(super) fn resume(
    positions: &[pb::GroupPosition],
    cursor: &str,
    max_groups: usize,
) -> Result<Resume, InvalidRequest> {
    let mut violations = Violations::new();
    let mut resume = Resume::new();
    if cursor.len() > cursor::max_len(max_groups) {
        violations.push(FieldViolation::new(
            "cursor",
            format!("is longer than any cursor of at most {max_groups} groups; pass it back as given"),
        ));
    } else if let Some(decoded) = violations.check(cursor::decode("cursor", cursor)) {
        resume.extend(decoded);
    }
    if violations.check(check_list_length("positions", positions.len(), 0, max_groups, "positions")).is_some() {
        for (index, position) in positions.iter().enumerate() {
            if position.group_id <= 0 {
                violations.push(FieldViolation::new(
                    format!("positions[{index}].group_id"),
                    format!("must be a positive group id (got {})", position.group_id),
                ));
            } else if position.event_seq < 0 {
                violations.push(FieldViolation::new(
                    format!("positions[{index}].event_seq"),
                    format!("must be 0 or a positive event_seq (got {})", position.event_seq),
                ));
            } else {
                // Both checked just above, with the messages this method always gave.
                let group = GroupId::from_trusted(position.group_id);
                let event_seq = EventSeq::from_trusted(position.event_seq);
                resume.insert(group, Position { event_seq, entry_token: position.entry_token });
            }
        }
    }
    if resume.len() > max_groups {
        violations.push(FieldViolation::new(
            "positions",
            format!("names {} groups; a stream carries at most {max_groups}", resume.len()),
        ));
    }
    violations.finish_with(|| Some(resume))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(id: i64) -> GroupId {
        GroupId::from_trusted(id)
    }

    fn seq(raw: i64) -> EventSeq {
        EventSeq::from_trusted(raw)
    }

    fn fields(error: InvalidRequest) -> Vec<String> {
        error.violations().iter().map(|violation| violation.field.clone()).collect()
    }

    fn start_request(kind: i32, payload_ref: &str, key: &str, rate: i32) -> pb::StartFanoutJobRequest {
        pb::StartFanoutJobRequest {
            kind,
            payload_ref: payload_ref.to_owned(),
            idempotency_key: key.to_owned(),
            rate_limit_per_second: rate,
        }
    }

    #[test]
    fn listings_read_zero_as_the_caller_and_name_every_bad_field() {
        let parsed = listing(0, 0, "").expect("defaults");
        assert_eq!((parsed.user, parsed.size.get(), parsed.before), (None, 100, None));
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
        assert_eq!(listing(5, 10, &token).expect("a token").before, Some(key));
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

    #[test]
    fn a_start_request_defaults_its_rate_and_names_every_bad_field() {
        let parsed = start_fanout_job(&start_request(2, "post-1", "key-1", 0), 50, 100).expect("valid");
        assert_eq!((parsed.kind, parsed.rate.get()), (JobKind::BroadcastNotification, 50));
        let refused = start_fanout_job(&start_request(0, "", &"k".repeat(129), 101), 50, 100).unwrap_err();
        assert_eq!(fields(refused), ["kind", "payload_ref", "idempotency_key", "rate_limit_per_second"]);
        assert_eq!(
            fields(start_fanout_job(&start_request(9, "p", "k", -1), 50, 100).unwrap_err()),
            ["kind", "rate_limit_per_second"]
        );
    }

    #[test]
    fn job_listing_tokens_hold_one_positive_job_id() {
        assert_eq!(job_listing(0, "").expect("defaults"), JobListing { size: PageSize::new(100), before: None });
        let token = Cursor(vec![7]).encode();
        assert_eq!(job_listing(5, &token).expect("a token").before, Some(JobId::from_trusted(7)));
        for bad in [Cursor(vec![0]).encode(), Cursor(vec![1, 2]).encode(), "x".to_owned()] {
            assert_eq!(fields(job_listing(5, &bad).unwrap_err()), ["page_token"], "{bad}");
        }
        assert_eq!(fields(job_listing(-1, "").unwrap_err()), ["page_size"]);
        assert_eq!(fields(job_id(0).unwrap_err()), ["job_id"]);
    }

    #[test]
    fn resume_positions_override_the_cursor_and_the_last_repeat_wins() {
        let cursor = cursor::encode(&Resume::from([
            (group(1), Position::at(seq(5))),
            (group(2), Position { event_seq: seq(6), entry_token: 3 }),
        ]));
        let positions = [
            pb::GroupPosition { group_id: 2, event_seq: 1, entry_token: 0 },
            pb::GroupPosition { group_id: 2, event_seq: 9, entry_token: 4 },
        ];
        let resumed = resume(&positions, &cursor, 10).expect("valid");
        let expected = Resume::from([
            (group(1), Position::at(seq(5))),
            (group(2), Position { event_seq: seq(9), entry_token: 4 }),
        ]);
        assert_eq!(resumed, expected);
    }

    #[test]
    fn too_many_positions_or_too_long_a_cursor_are_refused_unread() {
        let bad = vec![pb::GroupPosition { group_id: -1, event_seq: -1, entry_token: 0 }; 1_000_000];
        let refused = resume(&bad, "", 10).unwrap_err();
        assert!(refused.violations()[0].description.contains("got 1000000"));
        assert_eq!(fields(refused), ["positions"], "one violation, whatever the entries");

        let long = cursor::encode(&(1..=11).map(|id| (group(id), Position::at(EventSeq::ZERO))).collect());
        assert_eq!(fields(resume(&[], &long, 10).unwrap_err()), ["cursor"]);
        let eleven_groups = cursor::encode(&(1..=6).map(|id| (group(id), Position::at(EventSeq::ZERO))).collect());
        let five_more: Vec<pb::GroupPosition> =
            (7..=11).map(|group_id| pb::GroupPosition { group_id, event_seq: 0, entry_token: 0 }).collect();
        let refused = resume(&five_more, &eleven_groups, 10).unwrap_err();
        assert_eq!(fields(refused), ["positions"], "11 distinct groups in all");
    }

    #[test]
    fn bad_positions_are_capped() {
        let bad = vec![pb::GroupPosition { group_id: 0, event_seq: 0, entry_token: 0 }; 100];
        let refused = resume(&bad, "", 100).unwrap_err();
        assert_eq!(refused.violations().len(), fanfare_core::validation::MAX_REPORTED_VIOLATIONS);
        assert_eq!(refused.omitted(), 80);
    }
}
