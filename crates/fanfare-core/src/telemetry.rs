//! Process-wide tracing: JSON lines in production, human-readable in a terminal, filtered
//! like `RUST_LOG`; tests stay quiet unless `TEST_LOG` is set.

use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, TelemetryConfig};

/// The filter used when the configured one does not parse.
const FALLBACK_FILTER: &str = "info";
/// The audit trail's log target: kept at info whatever the configured filter says.
pub const AUDIT_TARGET: &str = "fanfare::audit";

/// Installs the global tracing subscriber described by `config`. Safe to call twice: the
/// first subscriber stays and later calls do nothing. An invalid filter falls back to
/// `info` with a warning. The audit target ([`AUDIT_TARGET`]) logs at info whatever the
/// filter.
pub fn init_tracing(config: &TelemetryConfig) {
    let (filter, filter_error) = match EnvFilter::try_new(&config.log_filter) {
        Ok(filter) => (filter, None),
        Err(error) => (EnvFilter::new(FALLBACK_FILTER), Some(error)),
    };
    let filter = filter.add_directive(audit_directive());
    let installed = match config.log_format {
        LogFormat::Json => tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_env_filter(filter)
            .try_init(),
        LogFormat::Pretty => tracing_subscriber::fmt().with_env_filter(filter).try_init(),
    };
    if installed.is_err() {
        tracing::debug!("tracing is already initialised; keeping the first subscriber");
        return;
    }
    if let Some(error) = filter_error {
        tracing::warn!(
            filter = %config.log_filter,
            %error,
            fallback = FALLBACK_FILTER,
            "invalid log filter; using the fallback"
        );
    }
}

/// `fanfare::audit=info`.
fn audit_directive() -> tracing_subscriber::filter::Directive {
    format!("{AUDIT_TARGET}=info").parse().expect("a valid directive")
}

/// Tracing for tests: nothing unless the `TEST_LOG` environment variable is set, then
/// human-readable output through the test harness, filtered by `RUST_LOG` (default `debug`).
/// Safe to call from every test.
pub fn init_test_tracing() {
    if std::env::var_os("TEST_LOG").is_none() {
        return;
    }
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("debug"));
    // Another test may have installed it already; that one stays.
    let _already_installed = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_audit_target_stays_on_under_a_quiet_filter() {
        let filter = EnvFilter::new("warn").add_directive(audit_directive());
        assert!(filter.to_string().contains("fanfare::audit=info"), "{filter}");
    }
}
