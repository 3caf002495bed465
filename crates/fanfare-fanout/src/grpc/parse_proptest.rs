//! Property tests of the request parsers ([`super::parse`]: the follow graph's, the job
//! RPCs' and `Subscribe`'s resume positions): any request message, however
//! hostile (extreme ids, unknown enum numbers, strings of any characters and of up to
//! 4 MiB, lists of up to ten times their limit), is either parsed into values within the
//! documented bounds or refused with a bounded error; never a panic.

use fanfare_core::arbitrary::{assert_parsed, config, ids, int32, int64, page_token, text};
use fanfare_core::paging::MAX_PAGE_SIZE;
use fanfare_proto::fanout::v1 as pb;
use proptest::prelude::*;

use super::parse;
use crate::config::DEFAULT_MAX_BATCH_SIZE;
use crate::jobs::domain::{MAX_IDEMPOTENCY_KEY_BYTES, MAX_PAYLOAD_REF_BYTES};

/// Groups one stream may carry in these tests.
const MAX_GROUPS: usize = 50;
/// The default and highest job rates in these tests.
const RATES: (u32, u32) = (50, 1_000);

fn position() -> impl Strategy<Value = pb::GroupPosition> {
    (int64(), int64(), any::<u64>()).prop_map(|(group_id, event_seq, entry_token)| pb::GroupPosition {
        group_id,
        event_seq,
        entry_token,
    })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn follows(creator in int64(), user_id in int64(), page_size in int32(), token in page_token(),
        user_ids in ids(DEFAULT_MAX_BATCH_SIZE), follower_user_id in int64(),
    ) {
        assert_parsed(&parse::creator(creator), |user| assert!(user.get() > 0));
        assert_parsed(&parse::listing(user_id, page_size, &token), |listing| {
            assert!(listing.user.is_none_or(|user| user.get() > 0));
            assert!((1..=MAX_PAGE_SIZE).contains(&listing.size.get()));
        });
        let counts = pb::GetFollowCountsRequest { user_ids: user_ids.clone() };
        assert_parsed(&parse::get_follow_counts(&counts, DEFAULT_MAX_BATCH_SIZE), |users| {
            assert!(!users.is_empty() && users.len() <= DEFAULT_MAX_BATCH_SIZE);
        });
        let check = pb::CheckFollowsRequest { follower_user_id, creator_user_ids: user_ids };
        assert_parsed(&parse::check_follows(&check, DEFAULT_MAX_BATCH_SIZE), |check| {
            assert!(!check.creators.is_empty() && check.creators.len() <= DEFAULT_MAX_BATCH_SIZE);
            assert!(check.creators.iter().all(|creator| creator.get() > 0));
        });
    }

    #[test]
    fn jobs(kind in int32(), payload_ref in text(), idempotency_key in text(), rate in int32(),
        job_id in int64(), page_size in int32(), token in page_token(),
    ) {
        let start = pb::StartFanoutJobRequest { kind, payload_ref, idempotency_key, rate_limit_per_second: rate };
        assert_parsed(&parse::start_fanout_job(&start, RATES.0, RATES.1), |job| {
            assert!(!job.payload_ref.as_str().is_empty() && job.payload_ref.as_str().len() <= MAX_PAYLOAD_REF_BYTES);
            assert!(job.idempotency_key.as_str().len() <= MAX_IDEMPOTENCY_KEY_BYTES);
            assert!((1..=RATES.1).contains(&job.rate.get()));
        });
        assert_parsed(&parse::job_id(job_id), |job| assert!(job.get() > 0));
        assert_parsed(&parse::job_listing(page_size, &token), |listing| {
            assert!((1..=MAX_PAGE_SIZE).contains(&listing.size.get()));
            assert!(listing.before.is_none_or(|job| job.get() > 0));
        });
    }

    #[test]
    fn subscribe(positions in prop::collection::vec(position(), 0..=MAX_GROUPS * 10 + 1), cursor in text()) {
        assert_parsed(&parse::resume(&positions, &cursor, MAX_GROUPS), |resume| {
            assert!(resume.len() <= MAX_GROUPS);
            assert!(resume.iter().all(|(group, position)| group.get() > 0 && position.event_seq.get() >= 0), "{resume:?}");
        });
    }
}
