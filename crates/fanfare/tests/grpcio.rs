//! Bad and huge requests as a grpcio caller sees them (grpcio is the C core behind the Python,
//! Ruby, PHP and C# clients, and refuses response metadata past 16 KiB): 1,000 bad ids are
//! INVALID_ARGUMENT with a few KiB of trailers, not grpcio's own RESOURCE_EXHAUSTED over
//! ~48 KiB of them; a ~4 MiB list of ids is refused on its length; a request past the 4 MiB
//! decode limit is RESOURCE_EXHAUSTED (docs/runtime.md, "Bounded refusals" and "Message
//! size"). Runs `tests/support/grpcio_client.py` against the real `fanfare dev` binary; `make
//! tools` installs grpcio.

#[allow(dead_code, reason = "only DevServer is used here")]
mod support;

use std::collections::HashMap;
use std::process::Command;

use support::DevServer;

/// What the script printed for one call.
struct Outcome {
    code: String,
    trailers: u64,
    message: String,
}

#[tokio::test]
async fn a_grpcio_caller_gets_our_refusals_whatever_the_request_held() {
    let server = DevServer::start().await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/grpcio_client.py");
    let output = Command::new("python3")
        .arg(script)
        .args([server.groups_addr(), server.messages_addr(), server.fanout_addr()])
        .output()
        .unwrap_or_else(|error| panic!("running python3 ({error})"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the grpcio client failed (install grpcio with `make tools`): {stderr}");

    let outcomes: HashMap<String, Outcome> = stdout
        .lines()
        .map(|line| {
            let value: serde_json::Value = serde_json::from_str(line).expect("one JSON line per call");
            let outcome = Outcome {
                code: value["code"].as_str().expect("a code").to_owned(),
                trailers: value["trailers"].as_u64().expect("a size"),
                message: value["message"].as_str().expect("a message").to_owned(),
            };
            (value["label"].as_str().expect("a label").to_owned(), outcome)
        })
        .collect();
    let outcome = |label: &str| outcomes.get(label).unwrap_or_else(|| panic!("no outcome for {label}: {stdout}"));

    for label in ["unread_negatives", "add_members_negatives", "follow_counts_4_mib"] {
        let refused = outcome(label);
        assert_eq!(refused.code, "INVALID_ARGUMENT", "{label}: {}", refused.message);
        assert!(refused.trailers < 8 * 1024, "{label}: {} bytes of trailers", refused.trailers);
    }
    assert!(outcome("add_members_negatives").message.contains("got 1000"), "refused on its length");
    assert!(outcome("follow_counts_4_mib").message.contains("got 4000000"), "refused on its length");
    let over_size = outcome("follow_counts_over_size");
    assert_eq!(over_size.code, "RESOURCE_EXHAUSTED", "{}", over_size.message);
}
