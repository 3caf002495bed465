//! Hostile request values for property tests of the request parsers (feature `proptest`):
//! integers at and around their extremes, strings of any characters and of up to 4 MiB,
//! lists of up to ten times a limit, page tokens near the real ones; and the bound every
//! refusal must keep (docs/runtime.md, "Bounded refusals").
//!
//! Each service tests its parsers with these next to the parsers (`grpc/parse_proptest.rs`),
//! with a modest number of cases ([`config`]) so the suite stays fast.

use proptest::prelude::*;
use proptest::test_runner::Config;

use crate::paging::Cursor;
use crate::validation::{InvalidRequest, MAX_MESSAGE_BYTES, MAX_REPORTED_VIOLATIONS};

/// The most an error's message and details may take (grpcio refuses metadata past 16 KiB).
pub const MAX_ERROR_BYTES: usize = 8 * 1024;

/// A string of about 4 MiB, the most a request may hold.
const FOUR_MIB: usize = 4 * 1024 * 1024;

/// The proptest configuration of the parser tests: 256 cases, no file of regressions.
pub fn config() -> Config {
    Config { cases: 256, failure_persistence: None, ..Config::default() }
}

/// Any int64, weighted towards the values parsers treat specially.
pub fn int64() -> impl Strategy<Value = i64> {
    prop_oneof![
        3 => prop::sample::select(vec![i64::MIN, i64::MIN + 1, -1, 0, 1, 2, i64::MAX - 1, i64::MAX]),
        3 => -5_i64..1_000,
        2 => any::<i64>(),
    ]
}

/// Any int32 (page sizes, seconds, enum numbers), weighted towards the special ones.
pub fn int32() -> impl Strategy<Value = i32> {
    prop_oneof![
        3 => prop::sample::select(vec![i32::MIN, -1, 0, 1, 2, 3, 4, 5, 999, i32::MAX]),
        3 => -5_i32..2_000,
        2 => any::<i32>(),
    ]
}

/// Any string: short ones of any characters (control characters, right-to-left marks,
/// astral planes), long repeats of one character, rarely one of about 4 MiB.
pub fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => Just(String::new()),
        4 => any::<String>(),
        4 => "\\PC{0,40}",
        2 => (any::<char>(), 0_usize..70_000).prop_map(|(character, count)| character.to_string().repeat(count)),
        1 => Just("x".repeat(FOUR_MIB)),
    ]
}

/// A string for the entries of a list: as [`text`] but at most a few hundred characters, so
/// a list of them stays cheap to generate.
pub fn short_text() -> impl Strategy<Value = String> {
    prop_oneof![
        1 => Just(String::new()),
        3 => "\\PC{0,40}",
        2 => any::<String>(),
        1 => (any::<char>(), 0_usize..300).prop_map(|(character, count)| character.to_string().repeat(count)),
    ]
}

/// Ids of any length up to ten times `limit` (ten times plus one: past it).
pub fn ids(limit: usize) -> impl Strategy<Value = Vec<i64>> {
    prop::collection::vec(int64(), 0..=limit * 10 + 1)
}

/// A page token: any string, or a well-formed one of one or two arbitrary keys (which may
/// still name an impossible position).
pub fn page_token() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => text(),
        3 => prop::collection::vec(int64(), 0..=3).prop_map(|keys| Cursor(keys).encode()),
    ]
}

/// Asserts a refusal stays bounded whatever the request held: at most
/// `MAX_REPORTED_VIOLATIONS` violations and one counting the rest, a short message, and an
/// INVALID_ARGUMENT status of a few KiB.
#[track_caller]
pub fn assert_bounded(error: &InvalidRequest) {
    let reported = error.reported();
    assert!(!reported.is_empty(), "a refusal names at least one field");
    assert!(reported.len() <= MAX_REPORTED_VIOLATIONS + 1, "{} violations reported", reported.len());
    assert!(error.to_string().len() <= MAX_MESSAGE_BYTES, "a message of {} bytes", error.to_string().len());
    let status = crate::status::invalid_argument(error);
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    let size = status.message().len() + status.details().len();
    assert!(size < MAX_ERROR_BYTES, "an error of {size} bytes");
}

/// Asserts a parse result is either a value `valid` accepts or a bounded refusal.
#[track_caller]
pub fn assert_parsed<T>(result: &Result<T, InvalidRequest>, valid: impl FnOnce(&T)) {
    match result {
        Ok(value) => valid(value),
        Err(error) => assert_bounded(error),
    }
}

#[cfg(test)]
mod tests {
    use proptest::proptest;

    use super::*;
    use crate::ids::UserId;
    use crate::paging::PageSize;
    use crate::validation::{Violations, check_list_length, distinct_list, text as parse_text};

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn text_fields_are_bounded_in_characters_and_free_of_controls(raw in text(), max in 0_usize..200) {
            assert_parsed(&parse_text("title", &raw, 1, max).map_err(InvalidRequest::from), |parsed| {
                let length = parsed.chars().count();
                assert!((1..=max).contains(&length), "{length} characters kept");
                assert!(!parsed.chars().any(|c| c.is_control() && c != '\n' && c != '\t'));
            });
        }

        #[test]
        fn id_lists_are_refused_on_length_or_kept_distinct_and_positive(raw in ids(100), max in 1_usize..150) {
            let mut violations = Violations::new();
            let parsed = distinct_list("user_ids", &raw, (1, max), "ids", |field, raw| UserId::parse(field, *raw), &mut violations);
            let result = violations.finish_with(|| parsed);
            assert_parsed(&result, |users| {
                assert!(!users.is_empty() && users.len() <= max && raw.len() <= max);
                let mut seen = std::collections::HashSet::new();
                assert!(users.iter().all(|user| user.get() > 0 && seen.insert(*user)), "{users:?}");
            });
            if raw.len() > max {
                let error = result.expect_err("a list past its limit");
                assert_eq!(error.violations().len(), 1, "refused on its length alone");
                assert!(check_list_length("user_ids", raw.len(), 1, max, "ids").is_err());
            }
        }

        #[test]
        fn page_sizes_and_tokens_are_bounded(size in int32(), token in page_token(), parts in 1_usize..3) {
            let result = PageSize::parse("page_size", size, 50, 100).map_err(InvalidRequest::from);
            assert_parsed(&result, |page| assert!((1..=100).contains(&page.get())));
            let cursor = Cursor::decode("page_token", &token, parts).map_err(InvalidRequest::from);
            assert_parsed(&cursor, |cursor| {
                assert!(cursor.as_ref().is_none_or(|cursor| cursor.0.len() == parts));
            });
        }
    }
}
