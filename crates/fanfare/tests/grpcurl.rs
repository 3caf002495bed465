//! Runs the real `grpcurl` against the real `fanfare dev` binary, as the README tells a
//! newcomer to: list and describe through reflection, create and read back a group from
//! JSON, and see a bad request's field violation; and reach a TLS server with `-cacert`, `-cert`
//! and `-key`, as docs/security.md shows.

mod support;

use fanfare_core::tls::testing::TestTlsFiles;
use support::{DevServer, free_port, grpcurl};

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

/// A `fanfare serve groups` with mTLS on and plaintext health on its own port, killed on drop.
struct TlsGroups {
    child: std::process::Child,
}

impl Drop for TlsGroups {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

#[tokio::test]
async fn grpcurl_reaches_a_tls_server_with_its_ca_and_a_client_certificate() {
    let files = TestTlsFiles::new();
    let (port, health_port) = (free_port(), free_port());
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_fanfare"))
        .args(["serve", "groups"])
        .env("FANFARE_LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .env("FANFARE_METRICS_ADDR", "127.0.0.1:0")
        .env("FANFARE_ALLOW_UNAUTHENTICATED", "true")
        .env("FANFARE_TLS_CERT_FILE", files.path("tls.crt"))
        .env("FANFARE_TLS_KEY_FILE", files.path("tls.key"))
        .env("FANFARE_TLS_CLIENT_CA_FILE", files.path("ca.crt"))
        .env("FANFARE_PLAINTEXT_HEALTH_ADDR", format!("127.0.0.1:{health_port}"))
        .env("RUST_LOG", "warn")
        .env_remove("DATABASE_URL")
        .env_remove("REDIS_URL")
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("spawning fanfare serve groups");
    let _server = TlsGroups { child };
    for address in [format!("127.0.0.1:{port}"), format!("127.0.0.1:{health_port}")] {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while tokio::net::TcpStream::connect(&address).await.is_err() {
            assert!(std::time::Instant::now() < deadline, "nothing listens on {address}");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    let ca = files.path("ca.crt").display().to_string();
    let (cert, key) = (files.path("client.crt").display().to_string(), files.path("client.key").display().to_string());
    let address = format!("localhost:{port}");
    let listed = grpcurl(&["-cacert", &ca, "-cert", &cert, "-key", &key, &address, "list"]).expect_success();
    assert!(listed.contains("fanfare.groups.v1.GroupService"), "{listed}");

    // Through a port-forward the address is not the certificate's name: -servername is.
    let by_address = format!("127.0.0.2:{port}");
    let forwarded = grpcurl(&[
        "-cacert",
        &ca,
        "-cert",
        &cert,
        "-key",
        &key,
        "-servername",
        "localhost",
        &format!("127.0.0.1:{port}"),
        "grpc.health.v1.Health/Check",
    ])
    .expect_success();
    assert!(forwarded.contains("SERVING"), "{forwarded}");
    grpcurl(&["-cacert", &ca, "-cert", &cert, "-key", &key, &by_address, "list"]).expect_failure();

    grpcurl(&["-cacert", &ca, &address, "list"]).expect_failure();
    grpcurl(&["-plaintext", &address, "list"]).expect_failure();
    let health =
        grpcurl(&["-plaintext", &format!("127.0.0.1:{health_port}"), "grpc.health.v1.Health/Check"]).expect_success();
    assert!(health.contains("SERVING"), "{health}");
    let listed = grpcurl(&["-plaintext", &format!("127.0.0.1:{health_port}"), "list"]).expect_success();
    assert!(listed.contains("grpc.health.v1.Health"), "{listed}");
    assert!(!listed.contains("fanfare"), "health alone is served in plaintext: {listed}");
}
