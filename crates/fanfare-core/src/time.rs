//! Conversions between protobuf timestamps and `chrono` times, checked at the edge.

use chrono::{DateTime, Utc};
use prost_types::Timestamp;

use crate::validation::FieldViolation;

/// `time` as PostgreSQL keeps it (whole microseconds), so that what a method returns equals
/// what a later read returns, on every storage.
pub fn stored_time(time: DateTime<Utc>) -> DateTime<Utc> {
    use chrono::SubsecRound;
    time.trunc_subsecs(6)
}

/// `time + duration`, saturating far in the future (9999-12-31, within PostgreSQL's range)
/// instead of overflowing, whatever the duration.
pub fn later(time: DateTime<Utc>, duration: std::time::Duration) -> DateTime<Utc> {
    let far_future = DateTime::from_timestamp(253_402_300_799, 0).unwrap_or(DateTime::<Utc>::MAX_UTC);
    chrono::TimeDelta::from_std(duration)
        .ok()
        .and_then(|delta| time.checked_add_signed(delta))
        .unwrap_or(far_future)
        .min(far_future)
}

/// When a lease of `lease` taken at `now` runs out, at the precision every store keeps.
pub fn lease_end(now: DateTime<Utc>, lease: std::time::Duration) -> DateTime<Utc> {
    stored_time(later(now, lease))
}

/// The current time at the precision every store keeps (whole microseconds).
pub fn now() -> DateTime<Utc> {
    stored_time(Utc::now())
}

/// A point in time as the wire carries it.
pub fn to_timestamp(time: DateTime<Utc>) -> Timestamp {
    Timestamp { seconds: time.timestamp(), nanos: i32::try_from(time.timestamp_subsec_nanos()).unwrap_or(0) }
}

/// An optional point in time as the wire carries it.
pub fn to_optional_timestamp(time: Option<DateTime<Utc>>) -> Option<Timestamp> {
    time.map(to_timestamp)
}

/// A wire timestamp in whole microseconds since the epoch (sub-microsecond digits dropped,
/// saturating at the ends of `i64`), for comparing times without converting each one.
pub fn timestamp_micros(timestamp: &Timestamp) -> i64 {
    timestamp.seconds.saturating_mul(1_000_000).saturating_add(i64::from(timestamp.nanos / 1_000))
}

/// Parses a wire timestamp; out-of-range values name the field.
pub fn parse_timestamp(field: &str, timestamp: &Timestamp) -> Result<DateTime<Utc>, FieldViolation> {
    let nanos = u32::try_from(timestamp.nanos).ok().filter(|nanos| *nanos < 1_000_000_000);
    nanos
        .and_then(|nanos| DateTime::from_timestamp(timestamp.seconds, nanos))
        .ok_or_else(|| FieldViolation::new(field, "must be a valid timestamp"))
}

/// Parses a required timestamp that must lie after `now`.
pub fn parse_future(
    field: &str,
    timestamp: Option<&Timestamp>,
    now: DateTime<Utc>,
) -> Result<DateTime<Utc>, FieldViolation> {
    let Some(timestamp) = timestamp else {
        return Err(FieldViolation::new(field, "is required"));
    };
    let time = parse_timestamp(field, timestamp)?;
    if time <= now {
        return Err(FieldViolation::new(field, "must be in the future"));
    }
    Ok(time)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_bad_nanos() {
        let now = Utc::now();
        let back = parse_timestamp("t", &to_timestamp(now)).unwrap();
        assert_eq!(back, now);
        let bad = Timestamp { seconds: 1, nanos: -1 };
        assert!(parse_timestamp("t", &bad).is_err());
    }

    #[test]
    fn micros_drop_sub_microsecond_digits_and_saturate() {
        let time = DateTime::from_timestamp(1_700_000_000, 123_456_789).unwrap();
        assert_eq!(timestamp_micros(&to_timestamp(time)), 1_700_000_000_123_456);
        assert_eq!(timestamp_micros(&to_timestamp(time)), time.timestamp_micros());
        assert_eq!(timestamp_micros(&Timestamp { seconds: i64::MAX, nanos: 0 }), i64::MAX);
        assert_eq!(timestamp_micros(&Timestamp { seconds: i64::MIN, nanos: 0 }), i64::MIN);
    }

    #[test]
    fn future_times_only() {
        let now = Utc::now();
        let past = to_timestamp(now - chrono::Duration::seconds(1));
        assert!(parse_future("until", Some(&past), now).is_err());
        assert!(parse_future("until", None, now).is_err());
        let future = to_timestamp(now + chrono::Duration::seconds(60));
        assert!(parse_future("until", Some(&future), now).is_ok());
    }
}
