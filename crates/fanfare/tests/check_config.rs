//! `fanfare serve <service> --check-config`: parses flags and environment and runs the
//! configuration checks without binding or connecting, so deploy checks can run the real
//! parser over rendered manifests.

use std::process::Command;

fn check(service: &str, env: &[(&str, &str)], args: &[&str]) -> (bool, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_fanfare"));
    command.args(["serve", service, "--check-config"]).args(args).env_clear().env("RUST_BACKTRACE", "0");
    for (name, value) in env {
        command.env(name, value);
    }
    let output = command.output().expect("running fanfare");
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

#[test]
fn a_valid_configuration_passes_without_serving() {
    for service in ["groups", "messages"] {
        let (ok, text) = check(service, &[("FANFARE_SERVICE_TOKEN", "s3cret")], &[]);
        assert!(ok, "{service}: {text}");
        assert!(text.contains("configuration ok"), "{text}");
    }
}

#[test]
fn a_missing_token_and_impossible_limits_are_refused() {
    let (ok, text) = check("groups", &[], &[]);
    assert!(!ok, "no token and no explicit dev mode must fail: {text}");
    assert!(text.contains("FANFARE_SERVICE_TOKEN"), "{text}");

    let (ok, text) =
        check("messages", &[("FANFARE_SERVICE_TOKEN", "s3cret"), ("FANFARE_MAX_CONCURRENT_REQUESTS", "0")], &[]);
    assert!(!ok, "{text}");
    assert!(text.contains("FANFARE_MAX_CONCURRENT_REQUESTS"), "{text}");
}

#[test]
fn malformed_values_are_refused_by_the_parser() {
    let (ok, text) =
        check("groups", &[("FANFARE_SERVICE_TOKEN", "s3cret"), ("FANFARE_REQUEST_TIMEOUT_MS", "10s")], &[]);
    assert!(!ok, "{text}");
    assert!(text.contains("invalid value '10s'"), "{text}");
}

/// The dev overlay's callers files (deploy/k8s/overlays/dev/callers) are ones the services
/// accept, and keep the relay method for the groups service alone.
#[test]
fn the_dev_overlay_callers_files_are_valid() {
    let folder = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/k8s/overlays/dev/callers");
    for service in ["groups", "messages", "fanout"] {
        let callers = fanfare_core::callers::Callers::load(&folder.join(format!("{service}.toml")))
            .unwrap_or_else(|error| panic!("{service}: {error:#}"));
        let ops = callers.by_token("dev-ops-token").expect("fanfare ctl's token is named");
        assert!(ops.is_operator(), "{service}");
        assert!(callers.by_token("dev-gateway-token").is_some(), "{service}");
    }
    let messages = fanfare_core::callers::Callers::load(&folder.join("messages.toml")).expect("valid");
    let append = "/fanfare.messages.v1.MessageService/AppendSystemUpdates";
    assert!(messages.by_token("dev-groups-token").expect("groups").may_call(append));
    for other in ["dev-gateway-token", "dev-ops-token", "dev-fanout-token"] {
        assert!(!messages.by_token(other).expect("named").may_call(append), "{other}");
    }
}
