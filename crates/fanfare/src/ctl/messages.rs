//! `fanfare ctl send` and `fanfare ctl tail group`: post a message, and follow a group's
//! update log by polling `GetUpdates` (what a client without a live stream would do).

use std::time::Duration;

use clap::Args;
use fanfare_proto::messages::v1 as pb;
use fanfare_proto::messages::v1::get_updates_response::Result as UpdatesResult;

use super::client::{CallError, Ctl, as_user, call};
use super::stop::{Limits, Stop};
use super::{output, positive_id};

/// Updates asked for per poll.
const PAGE_SIZE: i32 = 500;

#[derive(Debug, Args)]
pub(super) struct SendArgs {
    /// The group.
    #[arg(value_parser = positive_id())]
    group: i64,
    /// The text.
    text: String,
    /// The idempotency key (client_message_id); a new UUID when left out. Sending again with
    /// the same key returns the first message.
    #[arg(long)]
    key: Option<String>,
}

/// Posts one message as --as-user.
pub(super) async fn send(ctl: &Ctl, args: SendArgs) -> anyhow::Result<()> {
    let actor = ctl.actor()?;
    let key = args.key.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let request = pb::SendMessageRequest {
        group_id: args.group,
        client_message_id: key.clone(),
        text: args.text,
        ..Default::default()
    };
    let mut target = ctl.messages();
    let sent = call("SendMessage", &target.url, target.client.send_message(as_user(actor, request))).await?;
    if ctl.json() {
        return output::print_json(&sent, "fanfare.messages.v1.SendMessageResponse");
    }
    let Some(message) = &sent.message else {
        println!("sent (the answer carried no message)");
        return Ok(());
    };
    let verb = if sent.duplicate { "already sent" } else { "sent" };
    println!(
        "{verb}: message {} in group {} (event_seq {}, id {}, key {key})",
        message.message_seq, message.group_id, message.event_seq, message.message_id
    );
    Ok(())
}

#[derive(Debug, Args)]
pub(super) struct TailGroupArgs {
    /// The group (--as-user must be a member).
    #[arg(value_parser = positive_id())]
    group: i64,
    /// Print the updates after this event_seq first (0: the whole retained log); when left
    /// out, only updates from now on.
    #[arg(long, value_parser = clap::value_parser!(i64).range(0..))]
    after: Option<i64>,
    /// Milliseconds between two polls when there is nothing new.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(10..))]
    interval_ms: u64,
    #[command(flatten)]
    limits: Limits,
}

/// One page of `group`'s log after `after` (whose entry token is `after_token`, 0 when
/// unknown), read as `user`.
async fn updates(
    ctl: &Ctl,
    user: i64,
    group: i64,
    (after, after_token): (i64, u64),
    page_size: i32,
) -> Result<pb::GetUpdatesResponse, CallError> {
    let mut target = ctl.messages();
    let request =
        pb::GetUpdatesRequest { group_id: group, after_event_seq: after, page_size, after_entry_token: after_token };
    call("GetUpdates", &target.url, target.client.get_updates(as_user(user, request))).await
}

/// The latest event_seq of `group` and its entry token, read as `user` (a member): an
/// empty page from the end.
pub(super) async fn latest_event_seq(ctl: &Ctl, user: i64, group: i64) -> Result<(i64, u64), CallError> {
    let answer = updates(ctl, user, group, (i64::MAX, 0), 1).await?;
    Ok(match answer.result {
        Some(UpdatesResult::Page(page)) => (page.latest_event_seq, page.latest_entry_token),
        Some(UpdatesResult::ResyncRequired(resync)) => (resync.latest_event_seq, resync.latest_entry_token),
        None => (0, 0),
    })
}

/// The update `event_seq` of `group`, read as `user`; None when it is not retained (or
/// does not exist yet).
pub(super) async fn update_at(
    ctl: &Ctl,
    user: i64,
    group: i64,
    event_seq: i64,
) -> Result<Option<fanfare_proto::common::v1::Update>, CallError> {
    let answer = updates(ctl, user, group, (event_seq.saturating_sub(1), 0), 1).await?;
    Ok(match answer.result {
        Some(UpdatesResult::Page(page)) => page.updates.into_iter().find(|update| update.event_seq == event_seq),
        _ => None,
    })
}

/// Polls the group's log and prints each update as it arrives.
pub(super) async fn tail_group(ctl: &Ctl, args: TailGroupArgs) -> anyhow::Result<()> {
    let actor = ctl.actor()?;
    let group = args.group;
    let stop = Stop::new(args.limits);
    // The entry token of `after` once known: the log is then checked not to have gone back
    // under the tail.
    let (mut after, mut after_token) = match args.after {
        Some(after) => (after, 0),
        None => match stop.run(latest_event_seq(ctl, actor, group)).await {
            Ok(latest) => latest?,
            Err(stopped) => return stop.finish(stopped, 0, "updates"),
        },
    };
    eprintln!("tailing group {group} after event_seq {after} as user {actor} (Ctrl-C stops)");
    let mut seen = 0;
    loop {
        let answer = match stop.run(updates(ctl, actor, group, (after, after_token), PAGE_SIZE)).await {
            Ok(answer) => answer?,
            Err(stopped) => return stop.finish(stopped, seen, "updates"),
        };
        let mut more = false;
        match answer.result {
            Some(UpdatesResult::Page(page)) => {
                for update in &page.updates {
                    if ctl.json() {
                        output::print_json_line(update, "fanfare.common.v1.Update")?;
                    } else {
                        println!("{}", output::update_line(update));
                    }
                    (after, after_token) = (update.event_seq, update.entry_token);
                    seen += 1;
                    if stop.enough(seen) {
                        return Ok(());
                    }
                }
                more = page.has_more;
            }
            Some(UpdatesResult::ResyncRequired(resync)) => {
                println!(
                    "resync ({}): cannot read on after event_seq {after} (oldest retained {}); continuing after {}: {}",
                    output::resync_reason(resync.reason),
                    resync.oldest_retained_event_seq,
                    resync.latest_event_seq,
                    resync.instructions
                );
                (after, after_token) = (resync.latest_event_seq, resync.latest_entry_token);
            }
            None => {}
        }
        if more {
            continue;
        }
        if let Err(stopped) = stop.run(tokio::time::sleep(Duration::from_millis(args.interval_ms))).await {
            return stop.finish(stopped, seen, "updates");
        }
    }
}
