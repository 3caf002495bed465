//! Runs the real `grpcurl` against the real `fanfare dev` binary, as the README tells a
//! newcomer to: list and describe through reflection, create and read back a group from
//! JSON, and see a bad request's field violation.

mod support;

use support::{DevServer, grpcurl};

#[tokio::test]
async fn grpcurl_lists_describes_creates_and_reads_back() {
    let server = DevServer::start().await;
    let address = server.groups_addr();

    let listed = grpcurl(&["-plaintext", &address, "list"]).expect_success();
    assert!(listed.contains("fanfare.groups.v1.GroupService"), "{listed}");
    assert!(listed.contains("grpc.health.v1.Health"), "{listed}");

    let described = grpcurl(&["-plaintext", &address, "describe", "fanfare.groups.v1.GroupService"]).expect_success();
    assert!(described.contains("rpc CreateGroup"), "{described}");
    assert!(described.contains("rpc JoinWithInvite"), "{described}");

    let health = grpcurl(&["-plaintext", &address, "grpc.health.v1.Health/Check"]).expect_success();
    assert!(health.contains("SERVING"), "{health}");

    let created = grpcurl(&[
        "-plaintext",
        "-H",
        "x-fanfare-user-id: 1",
        "-d",
        r#"{"kind":"GROUP_KIND_COMMUNITY","title":"Skate crew"}"#,
        &address,
        "fanfare.groups.v1.GroupService/CreateGroup",
    ])
    .expect_success();
    let created: serde_json::Value = serde_json::from_str(&created).expect("CreateGroup prints JSON");
    let group_id = created["group"]["groupId"].as_str().expect("int64 ids print as JSON strings").to_owned();
    assert_eq!(created["group"]["ownerUserId"], "1");
    assert_eq!(created["group"]["memberCount"], "1");

    let read = grpcurl(&[
        "-plaintext",
        "-H",
        "x-fanfare-user-id: 2",
        "-d",
        &format!(r#"{{"group_id":{group_id}}}"#),
        &address,
        "fanfare.groups.v1.GroupService/GetGroup",
    ])
    .expect_success();
    let read: serde_json::Value = serde_json::from_str(&read).expect("GetGroup prints JSON");
    assert_eq!(read["group"]["title"], "Skate crew");
    assert_eq!(read["group"]["kind"], "GROUP_KIND_COMMUNITY");

    let refused = grpcurl(&[
        "-plaintext",
        "-H",
        "x-fanfare-user-id: 1",
        "-d",
        r#"{"kind":"GROUP_KIND_CHAT","title":""}"#,
        &address,
        "fanfare.groups.v1.GroupService/CreateGroup",
    ])
    .expect_failure();
    assert!(refused.contains("InvalidArgument"), "{refused}");
    assert!(refused.contains("title: must not be empty"), "{refused}");
    // The google.rpc.BadRequest detail is decoded through reflection, field by field.
    assert!(refused.contains("google.rpc.BadRequest"), "{refused}");
    assert!(refused.contains(r#""field":"title""#), "{refused}");

    let anonymous =
        grpcurl(&["-plaintext", "-d", r#"{"group_id":1}"#, &address, "fanfare.groups.v1.GroupService/GetGroup"])
            .expect_failure();
    assert!(anonymous.contains("Unauthenticated"), "{anonymous}");
    assert!(anonymous.contains("x-fanfare-user-id"), "{anonymous}");
}

#[tokio::test]
async fn grpcurl_sends_a_message_and_reads_the_history_back() {
    let server = DevServer::start().await;
    let groups = server.groups_addr();
    let messages = server.messages_addr();

    let listed = grpcurl(&["-plaintext", &messages, "list"]).expect_success();
    assert!(listed.contains("fanfare.messages.v1.MessageService"), "{listed}");

    let created = grpcurl(&[
        "-plaintext",
        "-H",
        "x-fanfare-user-id: 1",
        "-d",
        r#"{"kind":"GROUP_KIND_CHAT","title":"Friends"}"#,
        &groups,
        "fanfare.groups.v1.GroupService/CreateGroup",
    ])
    .expect_success();
    let created: serde_json::Value = serde_json::from_str(&created).expect("CreateGroup prints JSON");
    let group_id = created["group"]["groupId"].as_str().expect("int64 ids print as JSON strings").to_owned();

    let message = format!(r#"{{"group_id":{group_id},"client_message_id":"first","text":"hello from grpcurl"}}"#);
    let send = |body: &str| {
        grpcurl(&[
            "-plaintext",
            "-H",
            "x-fanfare-user-id: 1",
            "-d",
            body,
            &messages,
            "fanfare.messages.v1.MessageService/SendMessage",
        ])
    };
    let sent = send(&message).expect_success();
    let sent: serde_json::Value = serde_json::from_str(&sent).expect("SendMessage prints JSON");
    assert_eq!(sent["message"]["messageSeq"], "1", "{sent}");
    assert_eq!(sent["message"]["senderUserId"], "1", "{sent}");
    assert!(sent.get("duplicate").is_none(), "a first send is no duplicate: {sent}");
    let retried = send(&message).expect_success();
    let retried: serde_json::Value = serde_json::from_str(&retried).expect("SendMessage prints JSON");
    assert_eq!(retried["duplicate"], true, "{retried}");
    assert_eq!(retried["message"]["messageId"], sent["message"]["messageId"]);

    let history = grpcurl(&[
        "-plaintext",
        "-H",
        "x-fanfare-user-id: 1",
        "-d",
        &format!(r#"{{"group_id":{group_id},"direction":"DIRECTION_BACKWARD"}}"#),
        &messages,
        "fanfare.messages.v1.MessageService/ListMessages",
    ])
    .expect_success();
    let history: serde_json::Value = serde_json::from_str(&history).expect("ListMessages prints JSON");
    let listed = history["messages"].as_array().expect("a list of messages");
    assert_eq!(listed.len(), 1, "{history}");
    assert_eq!(listed[0]["text"], "hello from grpcurl");

    let refused = send(&format!(r#"{{"group_id":{group_id},"client_message_id":"","text":"x"}}"#)).expect_failure();
    assert!(refused.contains("InvalidArgument"), "{refused}");
    assert!(refused.contains(r#""field":"client_message_id""#), "{refused}");
}

#[tokio::test]
async fn grpcurl_subscribes_to_a_users_stream_and_sees_a_sent_message_arrive() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let server = DevServer::start().await;
    let (groups, messages, fanout) = (server.groups_addr(), server.messages_addr(), server.fanout_addr());
    let created = grpcurl(&[
        "-plaintext",
        "-H",
        "x-fanfare-user-id: 1",
        "-d",
        r#"{"kind":"GROUP_KIND_CHAT","title":"Live"}"#,
        &groups,
        "fanfare.groups.v1.GroupService/CreateGroup",
    ])
    .expect_success();
    let created: serde_json::Value = serde_json::from_str(&created).expect("CreateGroup prints JSON");
    let group_id = created["group"]["groupId"].as_str().expect("int64 ids print as JSON strings").to_owned();

    // The stream prints each frame as it arrives; read its lines on a thread.
    let mut subscriber = Command::new("grpcurl")
        .args(["-max-time", "30", "-plaintext", "-H", "x-fanfare-user-id: 1", "-d", "{}", &fanout])
        .arg("fanfare.fanout.v1.FanoutService/Subscribe")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("running grpcurl; install it with `make tools`");
    let stdout = subscriber.stdout.take().expect("piped stdout");
    let (lines, received) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                return;
            }
        }
    });
    let wait_for = |needle: &str| {
        let mut seen = String::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(25);
        while !seen.contains(needle) {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match received.recv_timeout(left) {
                Ok(line) => seen.push_str(&line),
                Err(_) => panic!("the stream never showed {needle:?}; it printed: {seen}"),
            }
        }
        seen
    };
    let first = wait_for("\"cursor\"");
    assert!(first.contains(&format!("\"groupId\": \"{group_id}\"")), "the stream carries the group: {first}");

    grpcurl(&[
        "-plaintext",
        "-H",
        "x-fanfare-user-id: 1",
        "-d",
        &format!(r#"{{"group_id":{group_id},"client_message_id":"live-1","text":"hello, stream"}}"#),
        &messages,
        "fanfare.messages.v1.MessageService/SendMessage",
    ])
    .expect_success();
    let frames = wait_for("hello, stream");
    assert!(frames.contains("\"updates\""), "{frames}");
    subscriber.kill().ok();
    subscriber.wait().ok();
}
