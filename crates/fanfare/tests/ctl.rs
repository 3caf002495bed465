//! `fanfare ctl` as an operator runs it: the real binary against a real `fanfare dev`,
//! reading the services' URLs from the same environment variables the services use.

#[allow(dead_code, reason = "the grpcurl helpers are for the other tests")]
mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use support::DevServer;

/// `fanfare ctl` pointed at `server`, with nothing inherited that could change its mind.
fn ctl_command(server: &DevServer) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_fanfare"));
    command
        .arg("ctl")
        .env("FANFARE_GROUPS_URL", format!("http://{}", server.groups_addr()))
        .env("FANFARE_MESSAGES_URL", format!("http://{}", server.messages_addr()))
        .env("FANFARE_FANOUT_URL", format!("http://{}", server.fanout_addr()))
        .env_remove("FANFARE_CTL_USER")
        .env_remove("FANFARE_SERVICE_TOKEN")
        .env("RUST_BACKTRACE", "1");
    command
}

/// What one `fanfare ctl` run printed.
struct Run {
    output: Output,
    args: String,
}

impl Run {
    fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }

    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }

    /// Stdout of a run that must have succeeded.
    #[track_caller]
    fn success(self) -> String {
        assert!(self.output.status.success(), "`ctl {}` failed: {}\n{}", self.args, self.stderr(), self.stdout());
        self.stdout()
    }

    /// Stderr of a run that must have failed, without a panic or a backtrace.
    #[track_caller]
    fn failure(self) -> String {
        assert!(!self.output.status.success(), "`ctl {}` succeeded: {}", self.args, self.stdout());
        let stderr = self.stderr();
        assert!(!stderr.contains("panicked"), "`ctl {}` panicked: {stderr}", self.args);
        assert!(!stderr.contains("Stack backtrace"), "`ctl {}` printed a backtrace: {stderr}", self.args);
        stderr
    }
}

/// Runs `fanfare ctl ARGS` to the end.
fn ctl(server: &DevServer, args: &[&str]) -> Run {
    let output = ctl_command(server).args(args).output().expect("running fanfare ctl");
    Run { output, args: args.join(" ") }
}

/// Creates a group as `owner` and returns its id (from the JSON answer).
fn create_group(server: &DevServer, owner: &str, kind: &str, title: &str) -> String {
    let created =
        ctl(server, &["--as-user", owner, "--json", "groups", "create", "--kind", kind, "--title", title]).success();
    let created: serde_json::Value = serde_json::from_str(&created).expect("--json prints JSON");
    created["group"]["groupId"].as_str().expect("int64 ids are JSON strings, as grpcurl prints them").to_owned()
}

/// A long-running `fanfare ctl` whose stdout lines are read on a thread.
struct Background {
    child: Child,
    lines: Receiver<String>,
    seen: String,
}

impl Background {
    fn spawn(server: &DevServer, args: &[&str]) -> Self {
        let mut child = ctl_command(server)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawning fanfare ctl");
        let stdout = child.stdout.take().expect("piped stdout");
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    return;
                }
            }
        });
        Self { child, lines, seen: String::new() }
    }

    /// Waits until the output so far contains `needle`.
    #[track_caller]
    fn wait_for(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(25);
        while !self.seen.contains(needle) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push_str(&line);
                    self.seen.push('\n');
                }
                Err(_) => panic!("never printed {needle:?}; printed: {}", self.seen),
            }
        }
        self.seen.clone()
    }

    /// Waits for the process to exit by itself; its success and everything it printed.
    fn finish(mut self) -> (bool, String) {
        let status = self.child.wait().expect("waiting for fanfare ctl");
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.seen.push_str(&line);
            self.seen.push('\n');
        }
        (status.success(), std::mem::take(&mut self.seen))
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

#[tokio::test]
async fn ctl_creates_reads_adds_sends_and_tails_a_group() {
    let server = DevServer::start().await;
    let group = create_group(&server, "1", "community", "Skate crew");

    let read = ctl(&server, &["--as-user", "2", "groups", "get", &group]).success();
    assert!(read.contains("\"Skate crew\""), "{read}");
    assert!(read.contains("COMMUNITY"), "{read}");
    assert!(read.contains("owner        user 1"), "{read}");

    let added = ctl(&server, &["--as-user", "1", "groups", "add", &group, "2", "3"]).success();
    assert!(added.contains("added to group"), "{added}");
    let members = ctl(&server, &["--as-user", "1", "groups", "members", &group]).success();
    assert!(members.contains("3 member(s)"), "{members}");
    assert!(members.contains("OWNER"), "{members}");
    let of = ctl(&server, &["groups", "of", "2"]).success();
    assert!(of.contains("user 2 is in 1 group(s)"), "{of}");

    let sent = ctl(&server, &["--as-user", "2", "send", &group, "first!", "--key", "c-1"]).success();
    assert!(sent.starts_with("sent: message 1 in group"), "{sent}");
    let again = ctl(&server, &["--as-user", "2", "send", &group, "first!", "--key", "c-1"]).success();
    assert!(again.starts_with("already sent: message 1"), "a retry with the key answers the original: {again}");

    // Created, the owner's join, 2 and 3 added, the post: five updates from the start.
    let tailed =
        ctl(&server, &["--as-user", "3", "tail", "group", &group, "--after", "0", "--count", "5", "--timeout", "20"])
            .success();
    assert!(tailed.contains("#1 "), "{tailed}");
    assert!(tailed.contains("created the COMMUNITY group \"Skate crew\""), "{tailed}");
    assert!(tailed.contains("user 2 posted message 1: \"first!\""), "{tailed}");
    assert_eq!(tailed.lines().count(), 5, "{tailed}");

    let removed = ctl(&server, &["--as-user", "1", "groups", "remove", &group, "3"]).success();
    assert!(removed.contains("removed user 3"), "{removed}");
    let json =
        ctl(&server, &["--as-user", "1", "--json", "tail", "group", &group, "--after", "5", "--count", "1"]).success();
    let update: serde_json::Value = serde_json::from_str(json.trim()).expect("one JSON object per line");
    assert_eq!(update["eventSeq"], "6", "{json}");
    assert_eq!(update["groupEvent"]["memberRemoved"]["userId"], "3", "{json}");
}

#[tokio::test]
async fn ctl_tails_a_users_stream_while_another_command_sends() {
    let server = DevServer::start().await;
    let group = create_group(&server, "1", "chat", "Live");
    ctl(&server, &["--as-user", "1", "groups", "add", &group, "2"]).success();
    // Let the join reach the log first, so the one update frame counted is the message.
    ctl(&server, &["--as-user", "1", "tail", "group", &group, "--after", "0", "--count", "3", "--timeout", "20"])
        .success();

    let mut tail = Background::spawn(&server, &["tail", "user", "2", "--count", "1", "--timeout", "30"]);
    let first = tail.wait_for("heartbeat");
    assert!(first.contains(&format!("positions {group}@")), "the stream carries the group: {first}");

    ctl(&server, &["--as-user", "1", "send", &group, "hello, stream"]).success();
    let (succeeded, printed) = tail.finish();
    assert!(succeeded, "--count 1 ends the tail after one update frame: {printed}");
    assert!(printed.contains("update        group"), "{printed}");
    assert!(printed.contains("user 1 posted message 1: \"hello, stream\""), "{printed}");

    // --json: one object per frame; the first is the heartbeat.
    let mut json_tail = Background::spawn(&server, &["--as-user", "2", "--json", "tail", "user", "--timeout", "30"]);
    let heartbeat = json_tail.wait_for("\n");
    let frame: serde_json::Value = serde_json::from_str(heartbeat.trim()).expect("a JSON frame per line");
    assert_eq!(frame["heartbeat"]["positions"][0]["groupId"], group.as_str(), "{heartbeat}");
}

#[tokio::test]
async fn ctl_explains_a_delivery_and_a_non_member() {
    let server = DevServer::start().await;
    let group = create_group(&server, "1", "community", "Explained");
    ctl(&server, &["--as-user", "1", "groups", "add", &group, "2"]).success();
    // Membership changes reach the group's log through the groups relay: wait for all three.
    ctl(&server, &["--as-user", "1", "tail", "group", &group, "--after", "0", "--count", "3", "--timeout", "20"])
        .success();

    let offline = ctl(&server, &["explain", "2", &group]).success();
    assert!(offline.contains("verdict: no stream open: the client is offline"), "{offline}");

    let mut tail = Background::spawn(&server, &["tail", "user", "2", "--timeout", "60"]);
    tail.wait_for("heartbeat");
    ctl(&server, &["--as-user", "1", "send", &group, "did you get this?"]).success();
    tail.wait_for("did you get this?");

    // Created, the owner's join, 2's join, the post: the post is event_seq 4.
    let delivered = ctl(&server, &["explain", "2", &group]).success();
    assert!(delivered.contains("membership   MEMBER since"), "{delivered}");
    assert!(delivered.contains("ban          none"), "{delivered}");
    assert!(delivered.contains("latest event_seq 4"), "{delivered}");
    assert!(delivered.contains(&format!("group {group} at event_seq 4")), "the pod's stream and position: {delivered}");
    assert!(delivered.contains("verdict: delivered: stream on pod "), "{delivered}");
    assert!(delivered.contains("has event_seq 4 >= 4"), "{delivered}");

    let json = ctl(&server, &["--json", "explain", "2", &group, "--event-seq", "4"]).success();
    let json: serde_json::Value = serde_json::from_str(&json).expect("--json explain prints JSON");
    assert_eq!(json["verdict"]["kind"], "delivered", "{json}");
    assert_eq!(json["pods"][0]["answer"]["streams"][0]["positions"][0]["eventSeq"], "4", "{json}");

    let stranger = ctl(&server, &["explain", "9", &group]).success();
    assert!(stranger.contains("membership   none"), "{stranger}");
    assert!(
        stranger.contains(&format!("verdict: not delivered: user 9 is not a member of group {group}")),
        "{stranger}"
    );

    let future = ctl(&server, &["explain", "2", &group, "--event-seq", "40"]).success();
    assert!(future.contains("update 40 does not exist yet"), "{future}");
}

#[tokio::test]
async fn ctl_follows_and_runs_a_fanout_job_to_the_end() {
    let server = DevServer::start().await;
    let followed = ctl(&server, &["--as-user", "2", "follow", "1"]).success();
    assert!(followed.contains("user 2 now follows user 1"), "{followed}");
    ctl(&server, &["--as-user", "3", "follow", "1"]).success();
    let again = ctl(&server, &["--as-user", "3", "follow", "1"]).success();
    assert!(again.contains("already followed"), "{again}");
    ctl(&server, &["--as-user", "4", "follow", "1"]).success();
    let unfollowed = ctl(&server, &["--as-user", "4", "unfollow", "1"]).success();
    assert!(unfollowed.contains("no longer follows"), "{unfollowed}");

    let mut notified = Background::spawn(&server, &["tail", "user", "2", "--timeout", "60"]);
    notified.wait_for("heartbeat");

    let watched = ctl(
        &server,
        &[
            "--as-user",
            "1",
            "jobs",
            "start",
            "--kind",
            "broadcast",
            "--payload",
            "post-9",
            "--key",
            "k-1",
            "--watch",
            "--interval-ms",
            "100",
            "--timeout",
            "30",
        ],
    )
    .success();
    assert!(watched.contains("started job 1"), "{watched}");
    let last = watched.lines().last().unwrap_or_default();
    assert!(last.contains("2/2 100%") && last.ends_with("SUCCEEDED"), "the last progress line: {watched}");
    assert!(watched.lines().filter(|line| line.starts_with("job 1 [")).count() >= 1, "{watched}");

    let notification = notified.wait_for("notification");
    // A join reaches the open stream as a membership change, without reconnecting.
    let group = create_group(&server, "1", "community", "New");
    ctl(&server, &["--as-user", "1", "groups", "add", &group, "2"]).success();
    notified.wait_for(&format!("membership    STARTED group {group}"));
    notified.wait_for("user 2 joined (added, member)");
    assert!(
        notification.contains("job 1 from creator 1: BROADCAST_NOTIFICATION \"post-9\" (key 1:2)"),
        "{notification}"
    );

    let same = ctl(
        &server,
        &["--as-user", "1", "jobs", "start", "--kind", "broadcast", "--payload", "post-9", "--key", "k-1"],
    )
    .success();
    assert!(same.contains("job 1 already exists for key \"k-1\""), "{same}");
    let read = ctl(&server, &["--as-user", "1", "--json", "jobs", "get", "1"]).success();
    let read: serde_json::Value = serde_json::from_str(&read).expect("JSON");
    assert_eq!(read["job"]["state"], "FANOUT_JOB_STATE_SUCCEEDED", "{read}");
    assert_eq!(read["job"]["followersDone"], "2", "{read}");
    let listed = ctl(&server, &["--as-user", "1", "jobs", "list"]).success();
    assert!(listed.contains("1 job(s) of user 1"), "{listed}");
    let cancelled = ctl(&server, &["--as-user", "1", "jobs", "cancel", "1"]).success();
    assert!(cancelled.contains("SUCCEEDED"), "cancelling a finished job changes nothing: {cancelled}");
    let watched_again = ctl(&server, &["--as-user", "1", "jobs", "watch", "1"]).success();
    assert!(watched_again.contains("SUCCEEDED"), "{watched_again}");

    let foreign = ctl(&server, &["--as-user", "2", "jobs", "get", "1"]).failure();
    assert!(foreign.contains("NOT_FOUND"), "another user's job is not found: {foreign}");
}

#[tokio::test]
async fn ctl_reports_failures_with_the_status_and_exits_non_zero() {
    let server = DevServer::start().await;

    let unknown = ctl(&server, &["--as-user", "1", "groups", "get", "999"]).failure();
    assert!(unknown.contains("GetGroup"), "{unknown}");
    assert!(unknown.contains("NOT_FOUND: group 999 does not exist"), "{unknown}");

    let refused = ctl(&server, &["--as-user", "1", "groups", "create", "--kind", "chat", "--title", ""]).failure();
    assert!(refused.contains("INVALID_ARGUMENT"), "{refused}");
    assert!(refused.contains("title: must not be empty"), "{refused}");

    let nobody = ctl(&server, &["groups", "get", "1"]).failure();
    assert!(nobody.contains("--as-user"), "{nobody}");

    let empty_group = ctl(&server, &["--as-user", "1", "send", "1", "x"]).failure();
    assert!(empty_group.contains("SendMessage"), "{empty_group}");

    for bad in [
        vec!["groups", "frobnicate"],
        vec!["--as-user", "1", "groups", "get", "abc"],
        vec!["--as-user", "0", "groups", "get", "1"],
        vec!["--as-user", "1", "groups", "create", "--kind", "party", "--title", "x"],
        vec!["--as-user", "1", "jobs", "start", "--kind", "broadcast"],
        vec!["--as-user", "1", "tail", "user", "--count", "-3"],
    ] {
        let refused = ctl(&server, &bad).failure();
        assert!(refused.contains("error:"), "{bad:?}: {refused}");
    }

    let unreachable =
        ctl(&server, &["--as-user", "1", "--groups-url", "http://127.0.0.1:1", "groups", "get", "1"]).failure();
    assert!(unreachable.contains("UNAVAILABLE"), "{unreachable}");
    let malformed = ctl(&server, &["--as-user", "1", "--groups-url", "groups:50051", "groups", "get", "1"]).failure();
    assert!(malformed.contains("invalid groups URL"), "{malformed}");
}
