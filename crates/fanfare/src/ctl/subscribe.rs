//! `fanfare ctl tail user`: opens a user's live stream (fanout `Subscribe`) as that user and
//! prints every frame as it arrives: updates, heartbeats, membership changes, resyncs,
//! notifications and the reconnect frame.

use clap::Args;
use fanfare_proto::fanout::v1 as pb;
use fanfare_proto::frame::{Frame, SubscribeResponse};

use super::client::{Ctl, as_user, call};
use super::stop::{Limits, Stop};
use super::{output, positive_id};

#[derive(Debug, Args)]
pub(super) struct TailUserArgs {
    /// Whose stream to open (acting as them); --as-user when left out.
    #[arg(value_parser = positive_id())]
    user: Option<i64>,
    /// Resume from the cursor of an earlier stream's heartbeat or reconnect frame.
    #[arg(long)]
    cursor: Option<String>,
    /// `--count` counts frames that carry updates.
    #[command(flatten)]
    limits: Limits,
}

/// Subscribes as the user and prints frames until Ctrl-C, `--timeout`, `--count` update
/// frames, or the server ends the stream.
pub(super) async fn tail_user(ctl: &Ctl, args: TailUserArgs) -> anyhow::Result<()> {
    let user = ctl.user_or_actor(args.user)?;
    let stop = Stop::new(args.limits);
    let mut target = ctl.fanout();
    let request =
        as_user(user, pb::SubscribeRequest { positions: Vec::new(), cursor: args.cursor.unwrap_or_default() });
    let subscribed = match stop.run(call("Subscribe", &target.url, target.client.subscribe(request))).await {
        Ok(subscribed) => subscribed?,
        Err(stopped) => return stop.finish(stopped, 0, "update frames"),
    };
    eprintln!("streaming user {user}'s updates from {} (Ctrl-C stops)", target.url);
    let mut frames = subscribed;
    let mut update_frames = 0;
    loop {
        let next = match stop.run(frames.message()).await {
            Ok(next) => next,
            Err(stopped) => return stop.finish(stopped, update_frames, "update frames"),
        };
        let frame = match next {
            Ok(Some(frame)) => frame,
            Ok(None) => {
                eprintln!("the server ended the stream");
                if !stop.counting() {
                    return Ok(());
                }
                anyhow::bail!("the stream ended after {update_frames} update frame(s), before --count");
            }
            Err(status) => {
                return Err(super::client::CallError { rpc: "Subscribe", url: target.url.clone(), status }.into());
            }
        };
        let carries_updates = matches!(frame.frame, Some(Frame::Updates(_)));
        print_frame(ctl, &frame)?;
        if carries_updates {
            update_frames += 1;
            if stop.enough(update_frames) {
                return Ok(());
            }
        }
    }
}

/// One frame: a JSON line, or a line per item.
fn print_frame(ctl: &Ctl, frame: &SubscribeResponse) -> anyhow::Result<()> {
    if ctl.json() {
        return output::print_json_line(frame, "fanfare.fanout.v1.SubscribeResponse");
    }
    match &frame.frame {
        Some(Frame::Updates(updates)) => {
            for update in updates.decode_all()? {
                println!("update        {}", output::update_line(&update));
            }
        }
        Some(Frame::Heartbeat(heartbeat)) => println!(
            "heartbeat     {} · positions {} · cursor {}",
            output::time(heartbeat.sent_at.as_ref()),
            output::positions(&heartbeat.positions),
            heartbeat.cursor
        ),
        Some(Frame::MembershipChange(change)) => println!(
            "membership    {} group {} (event_seq {})",
            output::membership_change_kind(change.kind),
            change.group_id,
            change.event_seq
        ),
        Some(Frame::Resync(resync)) => println!(
            "resync        group {} ({}): continues after {} (oldest retained {}): {}",
            resync.group_id,
            output::resync_reason(resync.reason),
            resync.latest_event_seq,
            resync.oldest_retained_event_seq,
            resync.instructions
        ),
        Some(Frame::Notification(notification)) => println!(
            "notification  job {} from creator {}: {} {:?} (key {})",
            notification.job_id,
            notification.creator_user_id,
            output::job_kind(notification.kind),
            notification.payload_ref,
            notification.key
        ),
        Some(Frame::Reconnect(reconnect)) => println!(
            "reconnect     {}: retry after {} ms with cursor {}",
            reconnect.reason, reconnect.retry_after_ms, reconnect.cursor
        ),
        None => println!("(an empty frame)"),
    }
    Ok(())
}
