//! `shutdown_on_signals` against a real SIGTERM sent to this test process. Its own test
//! binary, because the signal goes to the whole process.

#![cfg(unix)]

use std::time::Duration;

use fanfare_core::shutdown::shutdown_on_signals;
use fanfare_core::telemetry::init_test_tracing;

#[tokio::test]
async fn sigterm_cancels_the_token() {
    init_test_tracing();
    let token = shutdown_on_signals();
    assert!(!token.is_cancelled());

    let status = std::process::Command::new("kill")
        .args(["-TERM", &std::process::id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());

    tokio::time::timeout(Duration::from_secs(10), token.cancelled()).await.expect("the token is cancelled");
}
