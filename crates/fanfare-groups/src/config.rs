//! Configuration of the groups service: the shared server settings, the limits on group
//! sizes, batches, invites and request rates, each with a named default, and where the
//! messages and fanout services are.

use clap::Args;
use fanfare_core::config::{DependencyConfig, ServerConfig};

/// Default member limit of a CHAT group.
pub const DEFAULT_CHAT_MAX_MEMBERS: u64 = 32;
/// Default member limit of a COMMUNITY group.
pub const DEFAULT_COMMUNITY_MAX_MEMBERS: u64 = 1_000;
/// Default member limit of a BROADCAST group (0 = unlimited).
pub const DEFAULT_BROADCAST_MAX_MEMBERS: u64 = 0;
/// Default number of groups one user may belong to.
pub const DEFAULT_MAX_GROUPS_PER_USER: u64 = 5_000;
/// Default largest batch of ids in AddMembers and BatchGetGroups.
pub const DEFAULT_MAX_BATCH_SIZE: usize = 100;
/// Default invite lifetime: 7 days.
pub const DEFAULT_INVITE_TTL_SECONDS: i64 = 7 * 86_400;
/// Longest invite lifetime a caller may ask for: 30 days.
pub const MAX_INVITE_TTL_SECONDS: i64 = 30 * 86_400;
/// Shortest invite lifetime: one minute.
pub const MIN_INVITE_TTL_SECONDS: i64 = 60;
/// Most joins one invite may allow.
pub const MAX_INVITE_USES: i32 = 100_000;
/// Default sustained rate of changes one user may make, per second.
pub const DEFAULT_USER_CHANGES_PER_SECOND: u32 = 20;
/// Default burst of changes one user may make at once.
pub const DEFAULT_USER_CHANGES_BURST: u32 = 40;

/// Limits the groups service enforces.
#[derive(Debug, Clone, Args)]
pub struct GroupLimits {
    /// Member limit of CHAT groups (0 = unlimited).
    #[arg(long, env = "FANFARE_GROUPS_CHAT_MAX_MEMBERS", default_value_t = DEFAULT_CHAT_MAX_MEMBERS)]
    pub chat_max_members: u64,

    /// Member limit of COMMUNITY groups (0 = unlimited).
    #[arg(long, env = "FANFARE_GROUPS_COMMUNITY_MAX_MEMBERS", default_value_t = DEFAULT_COMMUNITY_MAX_MEMBERS)]
    pub community_max_members: u64,

    /// Member limit of BROADCAST groups (0 = unlimited).
    #[arg(long, env = "FANFARE_GROUPS_BROADCAST_MAX_MEMBERS", default_value_t = DEFAULT_BROADCAST_MAX_MEMBERS)]
    pub broadcast_max_members: u64,

    /// Groups one user may belong to.
    #[arg(long, env = "FANFARE_GROUPS_MAX_GROUPS_PER_USER", default_value_t = DEFAULT_MAX_GROUPS_PER_USER)]
    pub max_groups_per_user: u64,

    /// Largest batch of ids in AddMembers and BatchGetGroups.
    #[arg(long, env = "FANFARE_GROUPS_MAX_BATCH_SIZE", default_value_t = DEFAULT_MAX_BATCH_SIZE)]
    pub max_batch_size: usize,

    /// Sustained changes per second one user may make (create, join, moderate…); 0 = no limit.
    #[arg(long, env = "FANFARE_GROUPS_USER_CHANGES_PER_SECOND", default_value_t = DEFAULT_USER_CHANGES_PER_SECOND)]
    pub user_changes_per_second: u32,

    /// Burst of changes one user may make at once.
    #[arg(long, env = "FANFARE_GROUPS_USER_CHANGES_BURST", default_value_t = DEFAULT_USER_CHANGES_BURST)]
    pub user_changes_burst: u32,
}

impl Default for GroupLimits {
    fn default() -> Self {
        Self {
            chat_max_members: DEFAULT_CHAT_MAX_MEMBERS,
            community_max_members: DEFAULT_COMMUNITY_MAX_MEMBERS,
            broadcast_max_members: DEFAULT_BROADCAST_MAX_MEMBERS,
            max_groups_per_user: DEFAULT_MAX_GROUPS_PER_USER,
            max_batch_size: DEFAULT_MAX_BATCH_SIZE,
            user_changes_per_second: DEFAULT_USER_CHANGES_PER_SECOND,
            user_changes_burst: DEFAULT_USER_CHANGES_BURST,
        }
    }
}

/// Everything `fanfare serve groups` reads.
#[derive(Debug, Clone, Args)]
pub struct GroupsConfig {
    /// Shared gRPC server settings.
    #[command(flatten)]
    pub server: ServerConfig,

    /// Postgres (and Redis) location; unset for in-memory storage.
    #[command(flatten)]
    pub dependencies: DependencyConfig,

    /// Limits.
    #[command(flatten)]
    pub limits: GroupLimits,

    /// Where the messages service answers, e.g. `http://messages:50052`. The outbox relay
    /// appends every membership and settings change to the group's update log there; unset,
    /// changes stay in the outbox and no update log hears of them (logged as a warning).
    #[arg(long, env = "FANFARE_MESSAGES_URL")]
    pub messages_url: Option<String>,

    /// Where the fanout service answers, e.g. `http://fanout:50053`. JoinGroup asks its
    /// follow graph whether the caller follows the owner of a FOLLOWERS_ONLY group; unset,
    /// such joins answer FAILED_PRECONDITION (FOLLOWERS_ONLY_UNAVAILABLE) and the groups are
    /// joined with invite codes only.
    #[arg(long, env = "FANFARE_FANOUT_URL")]
    pub fanout_url: Option<String>,
}

impl GroupsConfig {
    /// The configuration for tests and `fanfare dev`: no token, default limits, no messages
    /// or fanout service (callers that run them set `messages_url` and `fanout_url`).
    pub fn for_dev(dependencies: DependencyConfig) -> Self {
        Self {
            server: ServerConfig::for_dev(),
            dependencies,
            limits: GroupLimits::default(),
            messages_url: None,
            fanout_url: None,
        }
    }
}
