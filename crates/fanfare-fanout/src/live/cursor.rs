//! Where a stream stands in each group's log, and the opaque resume cursor it hands out.
//!
//! A cursor is `s2` followed by, per group, the group id, the event_seq and the entry token
//! as 16 hex digits each. Cursors of the earlier `s1` form (no entry token) are still
//! accepted: their groups resume with the token unknown. Callers never build one; they pass
//! back what a heartbeat or reconnect frame gave them.

use std::collections::BTreeMap;
use std::fmt::Write;

use fanfare_core::ids::{EventSeq, GroupId};
use fanfare_core::validation::FieldViolation;
use fanfare_proto::fanout::v1::GroupPosition;

const VERSION: &str = "s2";
/// The earlier form, without entry tokens.
const VERSION_WITHOUT_TOKENS: &str = "s1";
const HEX_PER_NUMBER: usize = 16;

/// Where a stream stands in one group's log: the last update delivered, and that update's
/// entry token (0 when unknown: then the next update is not checked against it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Position {
    pub(crate) event_seq: EventSeq,
    pub(crate) entry_token: u64,
}

impl Position {
    /// At `event_seq`, its entry token unknown.
    pub(crate) fn at(event_seq: EventSeq) -> Self {
        Self { event_seq, entry_token: 0 }
    }

    /// The wire form of this position in `group`'s log.
    pub(crate) fn to_proto(self, group: GroupId) -> GroupPosition {
        GroupPosition { group_id: group.get(), event_seq: self.event_seq.get(), entry_token: self.entry_token }
    }

    /// Whether an update that names `token` as the entry at this position contradicts it: the
    /// log went back and issued the position again. Unknown tokens (0) contradict nothing.
    pub(crate) fn contradicted_by(&self, token: u64) -> bool {
        self.entry_token != 0 && token != 0 && self.entry_token != token
    }
}

/// The length of a cursor of `groups` groups, the longest a stream of at most that many
/// hands out: longer ones are refused before they are decoded.
pub(crate) fn max_len(groups: usize) -> usize {
    VERSION.len() + groups.saturating_mul(3 * HEX_PER_NUMBER)
}

/// Encodes `positions` (group → position).
pub(crate) fn encode(positions: &BTreeMap<GroupId, Position>) -> String {
    let mut cursor = String::with_capacity(max_len(positions.len()));
    cursor.push_str(VERSION);
    for (group, position) in positions {
        let (group, event_seq) = (group.get() as u64, position.event_seq.get() as u64);
        // Writing to a String cannot fail.
        let _ = write!(cursor, "{group:016x}{event_seq:016x}{:016x}", position.entry_token);
    }
    cursor
}

/// Decodes a cursor from `field`; empty means none.
pub(crate) fn decode(field: &str, cursor: &str) -> Result<Vec<(GroupId, Position)>, FieldViolation> {
    if cursor.is_empty() {
        return Ok(Vec::new());
    }
    let malformed = || FieldViolation::new(field, "is not a cursor this service handed out; pass it back as given");
    let (hex, numbers_per_group) = if let Some(hex) = cursor.strip_prefix(VERSION) {
        (hex, 3)
    } else if let Some(hex) = cursor.strip_prefix(VERSION_WITHOUT_TOKENS) {
        (hex, 2)
    } else {
        return Err(malformed());
    };
    let per_group = numbers_per_group * HEX_PER_NUMBER;
    if !hex.is_ascii() || hex.len() % per_group != 0 {
        return Err(malformed());
    }
    let number = |at: usize| -> Result<u64, FieldViolation> {
        let digits = &hex[at..at + HEX_PER_NUMBER];
        u64::from_str_radix(digits, 16).map_err(|_| malformed())
    };
    (0..hex.len() / per_group)
        .map(|index| {
            let at = index * per_group;
            let group = GroupId::parse(field, number(at)? as i64).map_err(|_| malformed())?;
            let event_seq =
                EventSeq::parse_position(field, number(at + HEX_PER_NUMBER)? as i64).map_err(|_| malformed())?;
            let entry_token = if numbers_per_group == 3 { number(at + 2 * HEX_PER_NUMBER)? } else { 0 };
            Ok((group, Position { event_seq, entry_token }))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn position(event_seq: i64, entry_token: u64) -> Position {
        Position { event_seq: EventSeq::from_trusted(event_seq), entry_token }
    }

    fn group(id: i64) -> GroupId {
        GroupId::from_trusted(id)
    }

    #[test]
    fn cursors_round_trip() {
        let positions = BTreeMap::from([
            (group(1), position(0, 0)),
            (group(42), position(17, 99)),
            (group(i64::MAX), position(i64::MAX, u64::MAX)),
        ]);
        let cursor = encode(&positions);
        assert!(cursor.starts_with("s2"));
        let decoded: BTreeMap<GroupId, Position> = decode("cursor", &cursor).expect("valid").into_iter().collect();
        assert_eq!(decoded, positions);
        assert_eq!(decode("cursor", "").expect("empty is none"), []);
        assert_eq!(decode("cursor", &encode(&BTreeMap::new())).expect("no groups"), []);
    }

    #[test]
    fn cursors_without_tokens_are_still_read() {
        let earlier = format!("s1{:016x}{:016x}", 7u64, 3u64);
        assert_eq!(
            decode("cursor", &earlier).expect("an s1 cursor"),
            [(group(7), Position::at(EventSeq::from_trusted(3)))]
        );
    }

    #[test]
    fn foreign_or_damaged_cursors_are_refused() {
        let cursor = encode(&BTreeMap::from([(group(7), position(3, 5))]));
        for bad in [
            "x",
            "s3",
            &cursor[..cursor.len() - 1],
            &format!("{cursor}zz"),
            &format!("s2{:016x}{:016x}{:016x}", u64::MAX, 1, 1),
            &format!("s1{:016x}{:016x}{:016x}", 1, 1, 1),
        ] {
            let violation = decode("cursor", bad).expect_err(bad);
            assert_eq!(violation.field, "cursor");
        }
    }

    #[test]
    fn the_longest_cursor_of_n_groups_is_max_len() {
        let positions: BTreeMap<GroupId, Position> =
            (1..=50).map(|id| (group(id), position(i64::MAX, u64::MAX))).collect();
        assert_eq!(encode(&positions).len(), max_len(50));
        assert_eq!(max_len(0), VERSION.len());
    }

    #[test]
    fn only_two_known_tokens_can_contradict() {
        assert!(position(4, 1).contradicted_by(2));
        assert!(!position(4, 1).contradicted_by(1));
        assert!(!position(4, 0).contradicted_by(2));
        assert!(!position(4, 1).contradicted_by(0));
    }
}
