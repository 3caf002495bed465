//! Configuration of the messages service: shared server settings, where the groups service
//! is, and every limit and tuning knob, each with a named default.

use std::time::Duration;

use clap::Args;
use fanfare_core::config::{DependencyConfig, ServerConfig};

use crate::domain::DEFAULT_MAX_TEXT_CHARS;

/// Default address of the groups service.
pub const DEFAULT_GROUPS_URL: &str = "http://127.0.0.1:50051";

/// Default sustained rate of one user's edits, deletions, pins and purges, per second.
pub const DEFAULT_USER_CHANGES_PER_SECOND: u32 = 5;
/// Default burst of one user's edits, deletions, pins and purges.
pub const DEFAULT_USER_CHANGES_BURST: u32 = 20;
/// Default sustained rate of one user's reaction changes, per second: every one is a log
/// entry delivered to the whole group (below the coalescing size).
pub const DEFAULT_USER_REACTIONS_PER_SECOND: u32 = 10;
/// Default burst of one user's reaction changes.
pub const DEFAULT_USER_REACTIONS_BURST: u32 = 30;

/// Limits and tuning of the messages service.
#[derive(Debug, Clone, Args)]
pub struct MessageLimits {
    /// Longest message text, in characters.
    #[arg(long, env = "FANFARE_MESSAGES_MAX_TEXT_CHARS", default_value_t = DEFAULT_MAX_TEXT_CHARS)]
    pub max_text_chars: usize,

    /// How long after sending a message its sender may edit it, in seconds.
    #[arg(long, env = "FANFARE_MESSAGES_EDIT_WINDOW_SECONDS", default_value_t = 900)]
    pub edit_window_seconds: u64,

    /// Most different emojis one message may carry.
    #[arg(long, env = "FANFARE_MESSAGES_MAX_DISTINCT_EMOJIS", default_value_t = 20)]
    pub max_distinct_emojis: usize,

    /// Most pinned messages per group.
    #[arg(long, env = "FANFARE_MESSAGES_MAX_PINS", default_value_t = 50)]
    pub max_pins: usize,

    /// Messages one user may send per second (sustained); 0 turns the limit off.
    #[arg(long, env = "FANFARE_MESSAGES_USER_SENDS_PER_SECOND", default_value_t = 5)]
    pub user_sends_per_second: u32,

    /// Messages one user may send at once.
    #[arg(long, env = "FANFARE_MESSAGES_USER_SENDS_BURST", default_value_t = 10)]
    pub user_sends_burst: u32,

    /// Edits, deletions, pins, unpins and purges one user may make per second (sustained);
    /// 0 turns the limit off.
    #[arg(long, env = "FANFARE_MESSAGES_USER_CHANGES_PER_SECOND", default_value_t = DEFAULT_USER_CHANGES_PER_SECOND)]
    pub user_changes_per_second: u32,

    /// Edits, deletions, pins, unpins and purges one user may make at once.
    #[arg(long, env = "FANFARE_MESSAGES_USER_CHANGES_BURST", default_value_t = DEFAULT_USER_CHANGES_BURST)]
    pub user_changes_burst: u32,

    /// Reactions one user may add or remove per second (sustained); 0 turns the limit off.
    #[arg(long, env = "FANFARE_MESSAGES_USER_REACTIONS_PER_SECOND", default_value_t = DEFAULT_USER_REACTIONS_PER_SECOND)]
    pub user_reactions_per_second: u32,

    /// Reactions one user may add or remove at once.
    #[arg(long, env = "FANFARE_MESSAGES_USER_REACTIONS_BURST", default_value_t = DEFAULT_USER_REACTIONS_BURST)]
    pub user_reactions_burst: u32,

    /// Groups larger than this get reactions coalesced into one update per message per window.
    #[arg(long, env = "FANFARE_MESSAGES_REACTION_COALESCE_ABOVE_MEMBERS", default_value_t = 100)]
    pub reaction_coalesce_above_members: i64,

    /// The coalescing window for reactions, in milliseconds.
    #[arg(long, env = "FANFARE_MESSAGES_REACTION_COALESCE_WINDOW_MS", default_value_t = 500)]
    pub reaction_coalesce_window_ms: u64,

    /// How long update-log entries are kept, in hours; older positions answer "resync required".
    #[arg(long, env = "FANFARE_MESSAGES_UPDATE_RETENTION_HOURS", default_value_t = 7 * 24)]
    pub update_retention_hours: u64,
}

impl Default for MessageLimits {
    fn default() -> Self {
        Self {
            max_text_chars: DEFAULT_MAX_TEXT_CHARS,
            edit_window_seconds: 900,
            max_distinct_emojis: 20,
            max_pins: 50,
            user_sends_per_second: 5,
            user_sends_burst: 10,
            user_changes_per_second: DEFAULT_USER_CHANGES_PER_SECOND,
            user_changes_burst: DEFAULT_USER_CHANGES_BURST,
            user_reactions_per_second: DEFAULT_USER_REACTIONS_PER_SECOND,
            user_reactions_burst: DEFAULT_USER_REACTIONS_BURST,
            reaction_coalesce_above_members: 100,
            reaction_coalesce_window_ms: 500,
            update_retention_hours: 7 * 24,
        }
    }
}

impl MessageLimits {
    /// The edit window.
    pub fn edit_window(&self) -> Duration {
        Duration::from_secs(self.edit_window_seconds)
    }

    /// The reaction coalescing window.
    pub fn reaction_coalesce_window(&self) -> Duration {
        Duration::from_millis(self.reaction_coalesce_window_ms.max(1))
    }

    /// How long update-log entries are kept.
    pub fn update_retention(&self) -> Duration {
        Duration::from_secs(self.update_retention_hours.saturating_mul(3_600))
    }
}

/// How concurrent writes are committed together (group commit).
#[derive(Debug, Clone, Args)]
pub struct CommitConfig {
    /// Most writes committed in one transaction.
    #[arg(long, env = "FANFARE_MESSAGES_COMMIT_BATCH_MAX", default_value_t = 256)]
    pub commit_batch_max: usize,

    /// Extra time the first write of a batch waits for company, in microseconds. 0 (the
    /// default): a batch is what queued while the lane's previous commit ran.
    #[arg(long, env = "FANFARE_MESSAGES_COMMIT_BATCH_WAIT_US", default_value_t = 0)]
    pub commit_batch_wait_us: u64,

    /// Commit lanes: batches committed at once, each on its own connection; every group
    /// belongs to one lane, which commits and publishes its batches in order (at most 64,
    /// one per outbox lane; more would stay idle). More lanes
    /// commit more in parallel but in smaller batches (more CPU per message in Postgres and
    /// here); see docs/messages.md for the measurements behind the default.
    #[arg(long, env = "FANFARE_MESSAGES_COMMIT_WORKERS", default_value_t = DEFAULT_COMMIT_WORKERS)]
    pub commit_workers: usize,

    /// Writes waiting to be committed before new ones are refused with RESOURCE_EXHAUSTED.
    #[arg(long, env = "FANFARE_MESSAGES_COMMIT_QUEUE", default_value_t = 8_192)]
    pub commit_queue: usize,

    /// How old an unpublished update must be, in milliseconds, before any pod's outbox
    /// recovery republishes it (the pod that committed it publishes within milliseconds).
    #[arg(long, env = "FANFARE_MESSAGES_OUTBOX_RECOVERY_GRACE_MS", default_value_t = DEFAULT_OUTBOX_RECOVERY_GRACE_MS)]
    pub outbox_recovery_grace_ms: u64,
}

/// Default of [`CommitConfig::commit_workers`]: one lane per pod; add pods, or lanes on a
/// database with cores to spare.
pub const DEFAULT_COMMIT_WORKERS: usize = 1;

/// Default of [`CommitConfig::outbox_recovery_grace_ms`].
pub const DEFAULT_OUTBOX_RECOVERY_GRACE_MS: u64 = 5_000;

impl Default for CommitConfig {
    fn default() -> Self {
        Self {
            commit_batch_max: 256,
            commit_batch_wait_us: 0,
            commit_workers: DEFAULT_COMMIT_WORKERS,
            commit_queue: 8_192,
            outbox_recovery_grace_ms: DEFAULT_OUTBOX_RECOVERY_GRACE_MS,
        }
    }
}

impl CommitConfig {
    /// How long a batch waits for company.
    pub fn batch_wait(&self) -> Duration {
        Duration::from_micros(self.commit_batch_wait_us)
    }

    /// How old an unpublished update is before recovery republishes it.
    pub fn outbox_recovery_grace(&self) -> Duration {
        Duration::from_millis(self.outbox_recovery_grace_ms)
    }
}

/// Everything `fanfare serve messages` reads.
#[derive(Debug, Clone, Args)]
pub struct MessagesConfig {
    /// Shared gRPC server settings.
    #[command(flatten)]
    pub server: ServerConfig,

    /// Postgres and Redis; unset for in-memory storage and the in-process bus.
    #[command(flatten)]
    pub dependencies: DependencyConfig,

    /// Where the groups service answers (membership and roles).
    #[arg(long, env = "FANFARE_GROUPS_URL", default_value = DEFAULT_GROUPS_URL)]
    pub groups_url: String,

    /// How long a membership read from the groups service is trusted, in seconds, unless a
    /// membership update invalidates it first.
    #[arg(long, env = "FANFARE_MESSAGES_MEMBERSHIP_CACHE_SECONDS", default_value_t = 60)]
    pub membership_cache_seconds: u64,

    /// Limits.
    #[command(flatten)]
    pub limits: MessageLimits,

    /// Group commit.
    #[command(flatten)]
    pub commit: CommitConfig,
}

impl MessagesConfig {
    /// The configuration for tests and `fanfare dev`.
    pub fn for_dev(dependencies: DependencyConfig, groups_url: String) -> Self {
        Self {
            server: ServerConfig::for_dev(),
            dependencies,
            groups_url,
            membership_cache_seconds: 60,
            limits: MessageLimits::default(),
            commit: CommitConfig::default(),
        }
    }

    /// How long a cached membership is trusted.
    pub fn membership_cache_ttl(&self) -> Duration {
        Duration::from_secs(self.membership_cache_seconds)
    }
}
