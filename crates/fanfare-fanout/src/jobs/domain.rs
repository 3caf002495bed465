//! The records of fan-out jobs and their pure rules: ids, kinds, states, the validated
//! request values, the checkpoint cursor and its text form, and progress (rate, ETA).

use std::fmt;

use chrono::{DateTime, Utc};
use fanfare_core::ids::UserId;
use fanfare_core::validation::FieldViolation;
use fanfare_proto::fanout::v1 as pb;

use crate::follows::domain::FollowKey;

/// A fan-out job, numbered by the job store in creation order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct JobId(i64);

impl JobId {
    /// Parses a raw id from a request field; zero and negatives are refused.
    pub fn parse(field: &str, raw: i64) -> Result<Self, FieldViolation> {
        if raw > 0 {
            Ok(Self(raw))
        } else {
            Err(FieldViolation::new(field, format!("must be a positive job id (got {raw})")))
        }
    }

    /// Wraps an id read back from storage, where only valid ids are ever written.
    pub fn from_trusted(raw: i64) -> Self {
        debug_assert!(raw > 0, "stored job ids are positive");
        Self(raw)
    }

    /// The raw value, for storage and the wire.
    pub fn get(self) -> i64 {
        self.0
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(formatter)
    }
}

/// What a job announces (`fanfare.fanout.v1.FanoutJobKind` without `UNSPECIFIED`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobKind {
    /// An invitation to a new group (payload_ref: the group id).
    NewGroupInvitation,
    /// A broadcast notification (payload_ref: what the push service should show).
    BroadcastNotification,
}

impl JobKind {
    /// The enum value's name, as stored and as written to the push stream.
    pub fn name(self) -> &'static str {
        match self {
            Self::NewGroupInvitation => "NEW_GROUP_INVITATION",
            Self::BroadcastNotification => "BROADCAST_NOTIFICATION",
        }
    }

    /// The kind a stored name stands for.
    pub fn from_name(name: &str) -> Option<Self> {
        [Self::NewGroupInvitation, Self::BroadcastNotification].into_iter().find(|kind| kind.name() == name)
    }

    /// The wire enum (for the RPCs and the live notification page).
    pub fn to_proto(self) -> pb::FanoutJobKind {
        match self {
            Self::NewGroupInvitation => pb::FanoutJobKind::NewGroupInvitation,
            Self::BroadcastNotification => pb::FanoutJobKind::BroadcastNotification,
        }
    }

    /// The kind a wire enum value names; `None` for `UNSPECIFIED` and unknown values.
    pub fn from_proto(raw: i32) -> Option<Self> {
        match pb::FanoutJobKind::try_from(raw).ok()? {
            pb::FanoutJobKind::NewGroupInvitation => Some(Self::NewGroupInvitation),
            pb::FanoutJobKind::BroadcastNotification => Some(Self::BroadcastNotification),
            pb::FanoutJobKind::Unspecified => None,
        }
    }
}

/// Where a job stands. `Pending → Running → Succeeded | Cancelled`; a pending job may be
/// cancelled before it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobState {
    /// Waiting for a worker.
    Pending,
    /// A worker is walking the followers (or was, and its lease has not been taken yet).
    Running,
    /// Every follower was notified.
    Succeeded,
    /// Cancelled; followers notified before stay notified.
    Cancelled,
}

impl JobState {
    /// The state's name, as stored.
    pub fn name(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Running => "RUNNING",
            Self::Succeeded => "SUCCEEDED",
            Self::Cancelled => "CANCELLED",
        }
    }

    /// The state a stored name stands for.
    pub fn from_name(name: &str) -> Option<Self> {
        [Self::Pending, Self::Running, Self::Succeeded, Self::Cancelled].into_iter().find(|state| state.name() == name)
    }

    /// The wire enum.
    pub fn to_proto(self) -> pb::FanoutJobState {
        match self {
            Self::Pending => pb::FanoutJobState::Pending,
            Self::Running => pb::FanoutJobState::Running,
            Self::Succeeded => pb::FanoutJobState::Succeeded,
            Self::Cancelled => pb::FanoutJobState::Cancelled,
        }
    }

    /// Whether nothing will change the job any more.
    pub fn is_finished(self) -> bool {
        matches!(self, Self::Succeeded | Self::Cancelled)
    }
}

/// Longest `payload_ref`, in bytes.
pub const MAX_PAYLOAD_REF_BYTES: usize = 512;
/// Longest `idempotency_key`, in bytes.
pub const MAX_IDEMPOTENCY_KEY_BYTES: usize = 128;

/// A text field of 1 to `max` bytes without control characters: payload refs and keys end
/// up in Redis entries and logs, where a stray newline or NUL only causes trouble.
fn bounded_bytes(field: &str, value: &str, max: usize) -> Result<String, FieldViolation> {
    if value.is_empty() {
        return Err(FieldViolation::new(field, "must not be empty"));
    }
    if value.len() > max {
        return Err(FieldViolation::new(field, format!("must be at most {max} bytes (got {})", value.len())));
    }
    if value.chars().any(char::is_control) {
        return Err(FieldViolation::new(field, "must not contain control characters"));
    }
    Ok(value.to_owned())
}

/// What a job refers to: 1 to 512 bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PayloadRef(String);

impl PayloadRef {
    /// Parses the `payload_ref` field.
    pub fn parse(field: &str, raw: &str) -> Result<Self, FieldViolation> {
        bounded_bytes(field, raw, MAX_PAYLOAD_REF_BYTES).map(Self)
    }

    /// Wraps a value read back from storage.
    pub fn from_trusted(raw: String) -> Self {
        Self(raw)
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The key a creator starts a job with: 1 to 128 bytes, unique per creator.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// Parses the `idempotency_key` field.
    pub fn parse(field: &str, raw: &str) -> Result<Self, FieldViolation> {
        bounded_bytes(field, raw, MAX_IDEMPOTENCY_KEY_BYTES).map(Self)
    }

    /// Wraps a value read back from storage.
    pub fn from_trusted(raw: String) -> Self {
        Self(raw)
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A job's rate limit in followers per second: at least 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate(u32);

impl Rate {
    /// Parses `rate_limit_per_second`: 0 means `default`; 1 to `max` are honoured; anything
    /// else is refused with the bounds named.
    pub fn parse(field: &str, raw: i32, default: u32, max: u32) -> Result<Self, FieldViolation> {
        debug_assert!(default >= 1 && default <= max, "the configuration is checked at start");
        match u32::try_from(raw) {
            Ok(0) => Ok(Self(default)),
            Ok(rate) if rate <= max => Ok(Self(rate)),
            _ => Err(FieldViolation::new(
                field,
                format!(
                    "must be between 1 and {max} followers per second, or 0 for the default of {default} (got {raw})"
                ),
            )),
        }
    }

    /// A rate read back from storage (at least 1).
    pub fn from_trusted(raw: u32) -> Self {
        debug_assert!(raw >= 1, "stored rates are positive");
        Self(raw.max(1))
    }

    /// Followers per second.
    pub fn get(self) -> u32 {
        self.0
    }
}

/// A validated StartFanoutJob request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartJob {
    /// What to announce.
    pub kind: JobKind,
    /// What it refers to.
    pub payload_ref: PayloadRef,
    /// The creator's key for this job.
    pub idempotency_key: IdempotencyKey,
    /// Followers per second.
    pub rate: Rate,
}

/// A job to be stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewJob {
    /// The creator whose followers are notified.
    pub creator: UserId,
    /// What the creator asked for.
    pub request: StartJob,
    /// The creator's follower count when the job was started.
    pub followers_total: u64,
}

/// A fan-out job as stored (without its lease, which only workers see).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FanoutJob {
    /// The job.
    pub id: JobId,
    /// The creator whose followers are notified.
    pub creator: UserId,
    /// What it announces.
    pub kind: JobKind,
    /// What it refers to.
    pub payload_ref: PayloadRef,
    /// The key it was started with.
    pub idempotency_key: IdempotencyKey,
    /// Followers per second.
    pub rate: Rate,
    /// Where it stands.
    pub state: JobState,
    /// The creator's follower count when it was started.
    pub followers_total: u64,
    /// Followers notified so far (as of the last checkpoint).
    pub followers_done: u64,
    /// The last follower notified, as of the last checkpoint: the walk continues strictly
    /// after it. `None` before the first page.
    pub cursor: Option<FollowKey>,
    /// When it was started.
    pub created_at: DateTime<Utc>,
    /// When a worker first picked it up.
    pub started_at: Option<DateTime<Utc>>,
    /// When it succeeded or was cancelled.
    pub finished_at: Option<DateTime<Utc>>,
}

impl FanoutJob {
    /// Whether a retried start with `request` asks for the same job as this one. The rate is
    /// not compared: it is a knob (and 0 means a default that may change between retries),
    /// not part of what the job announces.
    pub fn matches(&self, request: &StartJob) -> bool {
        self.kind == request.kind && self.payload_ref == request.payload_ref
    }

    /// Its progress at `now`.
    pub fn progress(&self, now: DateTime<Utc>) -> Progress {
        progress(self.followers_done, self.followers_total, self.state, self.started_at, self.finished_at, now)
    }
}

/// How fast a job goes and how long it has left.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Progress {
    /// Followers notified per second since the job started running.
    pub followers_per_second: f64,
    /// Estimated seconds left at that rate; 0 when finished or unknown.
    pub eta_seconds: u64,
}

/// The progress of a job that has notified `done` of `total` followers: the rate over its
/// running time (from `started_at` to `finished_at`, or to `now` while it runs), and the
/// followers left at that rate, rounded up.
pub fn progress(
    done: u64,
    total: u64,
    state: JobState,
    started_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Progress {
    let Some(started_at) = started_at else {
        return Progress { followers_per_second: 0.0, eta_seconds: 0 };
    };
    let until = finished_at.unwrap_or(now);
    let running_micros = (until - started_at).num_microseconds().unwrap_or(i64::MAX).max(0);
    if running_micros == 0 {
        return Progress { followers_per_second: 0.0, eta_seconds: 0 };
    }
    let followers_per_second = done as f64 * 1_000_000.0 / running_micros as f64;
    let left = total.saturating_sub(done);
    let eta_seconds = if state.is_finished() || left == 0 || followers_per_second <= 0.0 {
        0
    } else {
        (left as f64 / followers_per_second).ceil() as u64
    };
    Progress { followers_per_second, eta_seconds }
}

/// The text form of a walk position in push-stream page markers: `start` before the first
/// page, `<followed_at in microseconds>:<follower id>` after a follower.
pub fn cursor_text(cursor: Option<FollowKey>) -> String {
    match cursor {
        None => "start".to_owned(),
        Some(key) => format!("{}:{}", key.followed_at.timestamp_micros(), key.user.get()),
    }
}

/// The position a non-`start` [`cursor_text`] names.
pub fn parse_cursor_text(text: &str) -> Option<FollowKey> {
    let (micros, follower) = text.split_once(':')?;
    let followed_at = DateTime::from_timestamp_micros(micros.parse().ok()?)?;
    let user = UserId::parse("follower", follower.parse().ok()?).ok()?;
    Some(FollowKey { followed_at, user })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_893_456_000 + seconds, 0).unwrap()
    }

    #[test]
    fn rates_default_at_zero_and_name_their_bounds() {
        assert_eq!(Rate::parse("rate", 0, 50, 100).unwrap().get(), 50);
        assert_eq!(Rate::parse("rate", 100, 50, 100).unwrap().get(), 100);
        for bad in [-1, 101] {
            let refused = Rate::parse("rate", bad, 50, 100).unwrap_err();
            assert!(refused.description.contains("between 1 and 100"), "{refused}");
        }
    }

    #[test]
    fn texts_are_counted_in_bytes_and_refuse_control_characters() {
        assert!(PayloadRef::parse("payload_ref", &"é".repeat(256)).is_ok());
        assert!(PayloadRef::parse("payload_ref", &"é".repeat(257)).is_err());
        assert!(IdempotencyKey::parse("idempotency_key", "").is_err());
        assert!(IdempotencyKey::parse("idempotency_key", &"k".repeat(129)).is_err());
        assert!(IdempotencyKey::parse("idempotency_key", "a\nb").is_err());
    }

    #[test]
    fn names_round_trip() {
        for kind in [JobKind::NewGroupInvitation, JobKind::BroadcastNotification] {
            assert_eq!(JobKind::from_name(kind.name()), Some(kind));
            assert_eq!(JobKind::from_proto(kind.to_proto() as i32), Some(kind));
            assert_eq!(kind.to_proto().as_str_name(), format!("FANOUT_JOB_KIND_{}", kind.name()));
        }
        assert_eq!(JobKind::from_proto(0), None);
        assert_eq!(JobKind::from_proto(3), None);
        for state in [JobState::Pending, JobState::Running, JobState::Succeeded, JobState::Cancelled] {
            assert_eq!(JobState::from_name(state.name()), Some(state));
        }
        assert_eq!(JobState::from_name("running"), None);
    }

    #[test]
    fn progress_is_the_rate_over_running_time_and_the_eta_rounds_up() {
        let running = progress(300, 1_000, JobState::Running, Some(at(0)), None, at(2));
        assert_eq!(running, Progress { followers_per_second: 150.0, eta_seconds: 5 });
        let slower = progress(100, 1_000, JobState::Running, Some(at(0)), None, at(3));
        assert_eq!(slower.eta_seconds, 27, "900 left at 33.3/s");
        // Finished: the rate stops at finished_at and nothing is left.
        let finished = progress(1_000, 1_000, JobState::Succeeded, Some(at(0)), Some(at(4)), at(60));
        assert_eq!(finished, Progress { followers_per_second: 250.0, eta_seconds: 0 });
        let cancelled = progress(10, 1_000, JobState::Cancelled, Some(at(0)), Some(at(1)), at(60));
        assert_eq!(cancelled.eta_seconds, 0);
    }

    #[test]
    fn progress_is_unknown_before_the_start_and_before_the_first_follower() {
        let pending = progress(0, 1_000, JobState::Pending, None, None, at(5));
        assert_eq!(pending, Progress { followers_per_second: 0.0, eta_seconds: 0 });
        let just_started = progress(0, 1_000, JobState::Running, Some(at(5)), None, at(5));
        assert_eq!(just_started.eta_seconds, 0);
        let no_rate_yet = progress(0, 1_000, JobState::Running, Some(at(0)), None, at(5));
        assert_eq!(no_rate_yet.eta_seconds, 0);
        let more_done_than_total = progress(12, 10, JobState::Running, Some(at(0)), None, at(1));
        assert_eq!(more_done_than_total.eta_seconds, 0);
    }

    #[test]
    fn cursor_texts_round_trip() {
        assert_eq!(cursor_text(None), "start");
        let key = FollowKey {
            followed_at: DateTime::from_timestamp_micros(1_893_456_000_123_456).unwrap(),
            user: UserId::from_trusted(42),
        };
        assert_eq!(cursor_text(Some(key)), "1893456000123456:42");
        assert_eq!(parse_cursor_text(&cursor_text(Some(key))), Some(key));
        for bad in ["start", "1:0", "x:1", "12", ""] {
            assert_eq!(parse_cursor_text(bad), None, "{bad}");
        }
    }
}
