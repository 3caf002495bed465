//! The opaque resume cursor a stream hands out: every group's delivered position.
//!
//! `s1` followed by, per group, the group id and the event_seq as 16 hex digits each.
//! Callers never build one; they pass back what a heartbeat or reconnect frame gave them.

use std::collections::BTreeMap;
use std::fmt::Write;

use fanfare_core::validation::FieldViolation;

const VERSION: &str = "s1";
const HEX_PER_NUMBER: usize = 16;

/// The length of a cursor of `groups` groups, the longest a stream of at most that many
/// hands out: longer ones are refused before they are decoded.
pub(crate) fn max_len(groups: usize) -> usize {
    VERSION.len() + groups.saturating_mul(2 * HEX_PER_NUMBER)
}

/// Encodes `positions` (group → last delivered event_seq).
pub(crate) fn encode(positions: &BTreeMap<i64, i64>) -> String {
    let mut cursor = String::with_capacity(VERSION.len() + positions.len() * 2 * HEX_PER_NUMBER);
    cursor.push_str(VERSION);
    for (group, seq) in positions {
        // Writing to a String cannot fail.
        let _ = write!(cursor, "{:016x}{:016x}", *group as u64, *seq as u64);
    }
    cursor
}

/// Decodes a cursor from `field`; empty means none.
pub(crate) fn decode(field: &str, cursor: &str) -> Result<Vec<(i64, i64)>, FieldViolation> {
    if cursor.is_empty() {
        return Ok(Vec::new());
    }
    let malformed = || FieldViolation::new(field, "is not a cursor this service handed out; pass it back as given");
    let hex = cursor.strip_prefix(VERSION).ok_or_else(malformed)?;
    if !hex.is_ascii() || hex.len() % (2 * HEX_PER_NUMBER) != 0 {
        return Err(malformed());
    }
    let number = |at: usize| -> Result<i64, FieldViolation> {
        let digits = &hex[at..at + HEX_PER_NUMBER];
        u64::from_str_radix(digits, 16).map(|value| value as i64).map_err(|_| malformed())
    };
    (0..hex.len() / (2 * HEX_PER_NUMBER))
        .map(|index| {
            let at = index * 2 * HEX_PER_NUMBER;
            let (group, seq) = (number(at)?, number(at + HEX_PER_NUMBER)?);
            if group <= 0 || seq < 0 {
                return Err(malformed());
            }
            Ok((group, seq))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip() {
        let positions = BTreeMap::from([(1, 0), (42, 17), (i64::MAX, i64::MAX)]);
        let cursor = encode(&positions);
        assert!(cursor.starts_with("s1"));
        let decoded: BTreeMap<i64, i64> = decode("cursor", &cursor).expect("valid").into_iter().collect();
        assert_eq!(decoded, positions);
        assert_eq!(decode("cursor", "").expect("empty is none"), []);
        assert_eq!(decode("cursor", &encode(&BTreeMap::new())).expect("no groups"), []);
    }

    #[test]
    fn foreign_or_damaged_cursors_are_refused() {
        let cursor = encode(&BTreeMap::from([(7, 3)]));
        for bad in
            ["x", "s2", &cursor[..cursor.len() - 1], &format!("{cursor}zz"), "s1ffffffffffffffff0000000000000001"]
        {
            let violation = decode("cursor", bad).expect_err(bad);
            assert_eq!(violation.field, "cursor");
        }
    }

    #[test]
    fn the_longest_cursor_of_n_groups_is_max_len() {
        let positions: BTreeMap<i64, i64> = (1..=50).map(|group| (group, i64::MAX)).collect();
        assert_eq!(encode(&positions).len(), max_len(50));
        assert_eq!(max_len(0), VERSION.len());
    }
}
