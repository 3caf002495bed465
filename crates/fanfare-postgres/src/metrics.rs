//! The connection pool's metrics, recorded at every health ping ([`crate::Pool::ping`]) and
//! labelled `pool` with the pool's application name (`fanfare-groups`, `fanfare-messages`,
//! `fanfare-fanout`: the name `pg_stat_activity` shows too). Every service with a Postgres
//! store describes them ([`describe`]).

use metrics::{Unit, describe_gauge};

/// Connections the pool holds, busy or idle.
pub const POOL_CONNECTIONS: &str = "fanfare_db_pool_connections";
/// Connections the pool holds that no call is using.
pub const POOL_IDLE_CONNECTIONS: &str = "fanfare_db_pool_idle_connections";
/// The most connections the pool may open (`FANFARE_DATABASE_MAX_CONNECTIONS`).
pub const POOL_MAX_CONNECTIONS: &str = "fanfare_db_pool_max_connections";

/// Describes the pool's metrics (help text and units); call once the recorder is installed.
pub fn describe() {
    describe_gauge!(
        POOL_CONNECTIONS,
        Unit::Count,
        "PostgreSQL connections the pool holds (busy and idle), by pool, at the last health check."
    );
    describe_gauge!(
        POOL_IDLE_CONNECTIONS,
        Unit::Count,
        "PostgreSQL connections of the pool no call is using, by pool, at the last health check."
    );
    describe_gauge!(
        POOL_MAX_CONNECTIONS,
        Unit::Count,
        "The most PostgreSQL connections the pool may open (FANFARE_DATABASE_MAX_CONNECTIONS), by pool."
    );
}
