//! Per-user rate limits shared by every pod, on the bus's Redis ([`SharedLimits`]).
//!
//! Each key holds one number, the GCRA "theoretical arrival time" in microseconds of Redis'
//! own clock (`TIME`, so pods' clocks do not matter), and expires once it is in the past. One
//! script call per check: read, decide, write, atomically on the server.

use std::time::Duration;

use ::redis::Script;
use ::redis::aio::ConnectionManager;
use async_trait::async_trait;
use fanfare_core::rate_limit::{LimitQuota, SharedLimits};

/// GCRA in one step. KEYS[1]: the key; ARGV[1]: the emission interval (µs per unit);
/// ARGV[2]: the burst tolerance (µs). Answers 0 when allowed, else the wait in µs.
const GCRA: &str = r"
local now = redis.call('TIME')
local now_us = tonumber(now[1]) * 1000000 + tonumber(now[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now_us then tat = now_us end
local next_tat = tat + interval
local wait = next_tat - tolerance - now_us
if wait > 0 then return wait end
redis.call('SET', KEYS[1], string.format('%d', next_tat), 'PX', math.ceil((next_tat - now_us) / 1000) + 1)
return 0
";

/// Rate limits counted on Redis. Clones share the connection.
#[derive(Clone)]
pub struct RedisLimits {
    connection: ConnectionManager,
    prefix: String,
    script: Script,
}

impl RedisLimits {
    /// Limits on `connection`, every key under `prefix` (the bus's namespace).
    pub(crate) fn new(connection: ConnectionManager, prefix: String) -> Self {
        Self { connection, prefix, script: Script::new(GCRA) }
    }
}

#[async_trait]
impl SharedLimits for RedisLimits {
    async fn take(&self, key: &str, quota: LimitQuota) -> anyhow::Result<Result<(), Duration>> {
        let interval = u64::try_from(quota.interval.as_micros()).unwrap_or(u64::MAX / 2).max(1);
        let tolerance = interval.saturating_mul(u64::from(quota.burst.get()));
        let mut connection = self.connection.clone();
        let wait: u64 = self
            .script
            .key(format!("{}{key}", self.prefix))
            .arg(interval)
            .arg(tolerance)
            .invoke_async(&mut connection)
            .await?;
        Ok(if wait == 0 { Ok(()) } else { Err(Duration::from_micros(wait)) })
    }
}
