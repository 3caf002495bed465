//! Configuration of the fanout service: the shared server settings and the limits of the
//! follow graph, each with a named default and an environment override.

use clap::Args;
use fanfare_core::config::{DependencyConfig, ServerConfig};

/// Default number of creators one user may follow.
pub const DEFAULT_MAX_FOLLOWING: u64 = 10_000;
/// Default largest batch of ids in GetFollowCounts and CheckFollows.
pub const DEFAULT_MAX_BATCH_SIZE: usize = 100;
/// Default sustained rate of follows and unfollows one user may make, per second.
pub const DEFAULT_USER_CHANGES_PER_SECOND: u32 = 10;
/// Default burst of follows and unfollows one user may make at once.
pub const DEFAULT_USER_CHANGES_BURST: u32 = 20;

/// Limits of the follow graph.
#[derive(Debug, Clone, Args)]
pub struct FollowLimits {
    /// Creators one user may follow (0 = unlimited).
    #[arg(long, env = "FANFARE_FANOUT_MAX_FOLLOWING", default_value_t = DEFAULT_MAX_FOLLOWING)]
    pub max_following: u64,

    /// Largest batch of ids in GetFollowCounts and CheckFollows.
    #[arg(long, env = "FANFARE_FANOUT_MAX_BATCH_SIZE", default_value_t = DEFAULT_MAX_BATCH_SIZE)]
    pub max_batch_size: usize,

    /// Sustained follows and unfollows per second one user may make; 0 = no limit.
    #[arg(long, env = "FANFARE_FANOUT_USER_CHANGES_PER_SECOND", default_value_t = DEFAULT_USER_CHANGES_PER_SECOND)]
    pub user_changes_per_second: u32,

    /// Burst of follows and unfollows one user may make at once.
    #[arg(long, env = "FANFARE_FANOUT_USER_CHANGES_BURST", default_value_t = DEFAULT_USER_CHANGES_BURST)]
    pub user_changes_burst: u32,
}

impl Default for FollowLimits {
    fn default() -> Self {
        Self {
            max_following: DEFAULT_MAX_FOLLOWING,
            max_batch_size: DEFAULT_MAX_BATCH_SIZE,
            user_changes_per_second: DEFAULT_USER_CHANGES_PER_SECOND,
            user_changes_burst: DEFAULT_USER_CHANGES_BURST,
        }
    }
}

/// Everything `fanfare serve fanout` reads.
#[derive(Debug, Clone, Args)]
pub struct FanoutConfig {
    /// Shared gRPC server settings.
    #[command(flatten)]
    pub server: ServerConfig,

    /// Postgres (and Redis) location; unset for in-memory storage.
    #[command(flatten)]
    pub dependencies: DependencyConfig,

    /// Limits of the follow graph.
    #[command(flatten)]
    pub limits: FollowLimits,
}

impl FanoutConfig {
    /// The configuration for tests and `fanfare dev`: no token, default limits.
    pub fn for_dev(dependencies: DependencyConfig) -> Self {
        Self { server: ServerConfig::for_dev(), dependencies, limits: FollowLimits::default() }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Command {
        #[command(flatten)]
        config: FanoutConfig,
    }

    #[test]
    fn flags_default_to_the_named_defaults() {
        let parsed = Command::try_parse_from(["fanout", "--allow-unauthenticated"]).expect("parses");
        let limits = parsed.config.limits;
        assert_eq!(limits.max_following, DEFAULT_MAX_FOLLOWING);
        assert_eq!(limits.max_batch_size, DEFAULT_MAX_BATCH_SIZE);
        assert_eq!(limits.user_changes_per_second, DEFAULT_USER_CHANGES_PER_SECOND);
        assert_eq!(limits.user_changes_burst, DEFAULT_USER_CHANGES_BURST);
        let flags = ["fanout", "--max-following", "5", "--user-changes-per-second", "0"];
        let adjusted = Command::try_parse_from(flags).expect("parses").config.limits;
        assert_eq!((adjusted.max_following, adjusted.user_changes_per_second), (5, 0));
    }
}
