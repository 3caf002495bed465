//! `fanfare ctl explain USER GROUP`: why a user did or did not receive a group's update.
//!
//! It gathers what each service knows, through the public API like any caller: the group
//! and its settings, the user's membership (and ban, asked as the group's owner), the
//! group's latest event_seq, and, from every fanout pod behind the fanout URL, the user's
//! open streams with what each delivered. Then it names the first reason that explains
//! the outcome.

#![allow(
    clippy::disallowed_methods,
    reason = "the CLI's own failures, as a client shows statuses; no service returns them"
)]

use std::net::SocketAddr;

use anyhow::Context as _;
use clap::Args;
use fanfare_proto::common::v1::Update;
use fanfare_proto::fanout::v1 as fanout;
use fanfare_proto::groups::v1 as groups;
use serde_json::json;
use tokio::task::JoinSet;
use tonic::Code;

use super::client::{CallError, Ctl, POD_CALL_TIMEOUT, as_user, call};
use super::messages::{latest_event_seq, update_at};
use super::{output, positive_id};

/// Bans read before giving up looking for the user (the listing is by user id).
const MAX_BAN_PAGES: usize = 100;

#[derive(Debug, Args)]
pub(super) struct ExplainArgs {
    /// The user who should have received the update.
    #[arg(value_parser = positive_id())]
    user: i64,
    /// The group.
    #[arg(value_parser = positive_id())]
    group: i64,
    /// The update in question; the group's latest when left out.
    #[arg(long, value_parser = clap::value_parser!(i64).range(1..))]
    event_seq: Option<i64>,
}

/// What one fanout pod said about the user's streams.
struct PodAnswer {
    address: SocketAddr,
    answer: Result<fanout::ListStreamsResponse, CallError>,
}

/// Everything explain found out.
struct Findings {
    user: i64,
    group_id: i64,
    group: Result<groups::Group, CallError>,
    membership: Result<Option<groups::Membership>, CallError>,
    ban: Result<Option<groups::Ban>, String>,
    latest: Result<i64, String>,
    event_seq: Option<i64>,
    update: Option<Update>,
    pods: Result<Vec<PodAnswer>, String>,
}

/// Gathers the findings and prints them with a verdict.
pub(super) async fn explain(ctl: &Ctl, args: ExplainArgs) -> anyhow::Result<()> {
    let findings = gather(ctl, &args).await;
    let verdict = verdict(&findings);
    if ctl.json() {
        println!("{}", serde_json::to_string_pretty(&findings_json(&findings, &verdict)?)?);
    } else {
        print_findings(&findings);
        println!("verdict: {}", verdict.text);
    }
    Ok(())
}

async fn gather(ctl: &Ctl, args: &ExplainArgs) -> Findings {
    let (user, group_id) = (args.user, args.group);
    let group = read_group(ctl, user, group_id).await;
    let membership = match own_membership(ctl, user, group_id).await {
        Ok(membership) => Ok(Some(membership)),
        Err(error) if error.code() == Code::NotFound => Ok(None),
        Err(error) => Err(error),
    };
    // The owner may read bans and the log whatever the group's kind.
    let reader = group.as_ref().map(|group| group.owner_user_id).ok();
    let ban = match reader {
        Some(owner) => find_ban(ctl, owner, group_id, user).await.map_err(|error| error.to_string()),
        None => Err("unknown: the group could not be read, so neither could its bans".to_owned()),
    };
    let log_reader = reader.or(membership.as_ref().ok().and_then(|found| found.as_ref()).map(|_| user));
    let latest = match log_reader {
        Some(reader) => {
            latest_event_seq(ctl, reader, group_id).await.map(|(latest, _)| latest).map_err(|error| error.to_string())
        }
        None => Err("unknown: no member to read the group's log as".to_owned()),
    };
    let event_seq = args.event_seq.or(latest.as_ref().ok().copied().filter(|latest| *latest > 0));
    let update = match (log_reader, event_seq) {
        (Some(reader), Some(event_seq)) => update_at(ctl, reader, group_id, event_seq).await.ok().flatten(),
        _ => None,
    };
    let pods = ask_every_pod(ctl, user).await;
    Findings { user, group_id, group, membership, ban, latest, event_seq, update, pods }
}

/// The group, read as the user (members and public groups), else as --as-user.
async fn read_group(ctl: &Ctl, user: i64, group_id: i64) -> Result<groups::Group, CallError> {
    let read_as = |reader: i64| async move {
        let mut target = ctl.groups();
        let request = as_user(reader, groups::GetGroupRequest { group_id });
        call("GetGroup", &target.url, target.client.get_group(request)).await
    };
    let answer = match read_as(user).await {
        Err(error) if matches!(error.code(), Code::NotFound | Code::PermissionDenied) => {
            match ctl.actor_if_given().filter(|actor| *actor != user) {
                Some(actor) => read_as(actor).await,
                None => Err(error),
            }
        }
        answer => answer,
    }?;
    answer.group.ok_or_else(|| CallError {
        rpc: "GetGroup",
        url: ctl.groups().url,
        status: tonic::Status::internal("the answer carried no group"),
    })
}

/// The user's own membership (everyone may read their own).
async fn own_membership(ctl: &Ctl, user: i64, group_id: i64) -> Result<groups::Membership, CallError> {
    let mut target = ctl.groups();
    let request = as_user(user, groups::GetMembershipRequest { group_id, user_id: user });
    let answer = call("GetMembership", &target.url, target.client.get_membership(request)).await?;
    answer.membership.ok_or_else(|| CallError {
        rpc: "GetMembership",
        url: target.url.clone(),
        status: tonic::Status::internal("the answer carried no membership"),
    })
}

/// The user's ban, looked up as the owner (bans are listed by ascending user id).
async fn find_ban(ctl: &Ctl, owner: i64, group_id: i64, user: i64) -> Result<Option<groups::Ban>, CallError> {
    let mut page_token = String::new();
    for _ in 0..MAX_BAN_PAGES {
        let mut target = ctl.groups();
        let request = as_user(owner, groups::ListBansRequest { group_id, page_size: 1000, page_token });
        let page = call("ListBans", &target.url, target.client.list_bans(request)).await?;
        if let Some(ban) = page.bans.iter().find(|ban| ban.user_id == user) {
            return Ok(Some(ban.clone()));
        }
        let passed = page.bans.last().is_some_and(|ban| ban.user_id > user);
        if passed || page.next_page_token.is_empty() {
            return Ok(None);
        }
        page_token = page.next_page_token;
    }
    Ok(None)
}

/// Every address the fanout URL's host resolves to (each pod behind a headless Service).
async fn fanout_addresses(url: &str) -> anyhow::Result<Vec<SocketAddr>> {
    let uri: tonic::codegen::http::Uri = url.parse().with_context(|| format!("fanout URL {url:?}"))?;
    let host = uri.host().with_context(|| format!("fanout URL {url:?} names no host"))?;
    let default_port = if uri.scheme_str() == Some("https") { 443 } else { 80 };
    let port = uri.port_u16().unwrap_or(default_port);
    let mut addresses: Vec<SocketAddr> =
        tokio::net::lookup_host(format!("{host}:{port}")).await.with_context(|| format!("resolving {host}"))?.collect();
    addresses.sort();
    addresses.dedup();
    Ok(addresses)
}

/// Asks every fanout pod, at once, for the user's streams.
async fn ask_every_pod(ctl: &Ctl, user: i64) -> Result<Vec<PodAnswer>, String> {
    let addresses = fanout_addresses(ctl.fanout_url()).await.map_err(|error| format!("{error:#}"))?;
    let mut asking = JoinSet::new();
    for address in addresses {
        let mut target = ctl.fanout_pod(address).map_err(|error| format!("{error:#}"))?;
        asking.spawn(async move {
            let request = as_user(user, fanout::ListStreamsRequest {});
            let listing = call("ListStreams", &target.url, target.client.list_streams(request));
            // The connect timeout is longer than a pod may take here.
            let answer = match tokio::time::timeout(POD_CALL_TIMEOUT * 2, listing).await {
                Ok(answer) => answer,
                Err(_) => Err(CallError {
                    rpc: "ListStreams",
                    url: target.url.clone(),
                    status: tonic::Status::deadline_exceeded("no answer"),
                }),
            };
            PodAnswer { address, answer }
        });
    }
    let mut answers = asking.join_all().await;
    answers.sort_by_key(|answer| answer.address);
    Ok(answers)
}

/// What explains the outcome.
struct Verdict {
    /// A short name: delivered, behind, not_carried, offline, not_member, banned, …
    kind: &'static str,
    /// The sentence printed after `verdict:`.
    text: String,
}

fn verdict_of(kind: &'static str, text: String) -> Verdict {
    Verdict { kind, text }
}

/// One stream's position in the group: (pod, position if it carries the group).
fn stream_positions(findings: &Findings) -> Vec<(String, Option<i64>)> {
    let Ok(pods) = &findings.pods else { return Vec::new() };
    let mut positions = Vec::new();
    for pod in pods {
        let Ok(listing) = &pod.answer else { continue };
        for stream in &listing.streams {
            let position = stream.positions.iter().find(|position| position.group_id == findings.group_id);
            positions.push((pod_name(listing, pod.address), position.map(|position| position.event_seq)));
        }
    }
    positions
}

fn pod_name(listing: &fanout::ListStreamsResponse, address: SocketAddr) -> String {
    format!("{} ({address})", listing.pod)
}

/// When what the update records happened, by the clock of the service where it happened:
/// an update's own `occurred_at` is when the messages service appended it, which for a
/// relayed membership change can be after the user's `joined_at`.
fn happened_at(update: &Update) -> Option<&prost_types::Timestamp> {
    use fanfare_proto::common::v1::update::Change;
    let at = match &update.change {
        Some(Change::GroupEvent(event)) => event.occurred_at.as_ref(),
        Some(Change::MessagePosted(posted)) => posted.message.as_ref().and_then(|message| message.created_at.as_ref()),
        _ => None,
    };
    at.or(update.occurred_at.as_ref())
}

fn verdict(findings: &Findings) -> Verdict {
    let (user, group) = (findings.user, findings.group_id);
    if let Ok(Some(ban)) = &findings.ban {
        let until = match &ban.until {
            Some(until) => format!("until {}", output::time(Some(until))),
            None => "permanently".to_owned(),
        };
        return verdict_of(
            "banned",
            format!(
                "not delivered: user {user} is banned from group {group} since {} ({until}, by user {}{})",
                output::time(ban.banned_at.as_ref()),
                ban.banned_by_user_id,
                if ban.reason.is_empty() { String::new() } else { format!(": {:?}", ban.reason) }
            ),
        );
    }
    match &findings.membership {
        Ok(None) if findings.group.is_err() => {
            return verdict_of(
                "not_member",
                format!(
                    "not delivered: user {user} cannot see group {group} (NOT_FOUND): it does not exist, or it is a \
                     private chat user {user} is not in"
                ),
            );
        }
        Ok(None) => {
            return verdict_of("not_member", format!("not delivered: user {user} is not a member of group {group}"));
        }
        Err(error) => {
            return verdict_of("unknown", format!("unknown: the membership could not be read: {}", error.summary()));
        }
        Ok(Some(_)) => {}
    }
    let Some(event_seq) = findings.event_seq else {
        return match &findings.latest {
            Ok(_) => verdict_of("nothing", format!("nothing to deliver: group {group} has no update yet")),
            Err(error) => verdict_of("unknown", format!("unknown: the group's log could not be read: {error}")),
        };
    };
    if let Ok(latest) = findings.latest
        && event_seq > latest
    {
        return verdict_of(
            "no_such_update",
            format!("not delivered: update {event_seq} does not exist yet (group {group}'s latest is {latest})"),
        );
    }
    if let (Some(update), Ok(Some(membership))) = (&findings.update, &findings.membership)
        && let (Some(occurred), Some(joined)) =
            (happened_at(update).and_then(output::datetime), membership.joined_at.as_ref().and_then(output::datetime))
        && occurred < joined
    {
        return verdict_of(
            "before_join",
            format!(
                "not delivered live: update {event_seq} ({}) predates user {user}'s membership (joined {}); it is \
                 history, read with ListMessages / GetUpdates",
                output::time(happened_at(update)),
                output::time(membership.joined_at.as_ref())
            ),
        );
    }
    let pods = match &findings.pods {
        Ok(pods) => pods,
        Err(error) => return verdict_of("unknown", format!("unknown: the fanout pods could not be found: {error}")),
    };
    let unanswered = pods.iter().filter(|pod| pod.answer.is_err()).count();
    if unanswered == pods.len() {
        return verdict_of("unknown", format!("unknown: none of the {} fanout pod(s) answered", pods.len()));
    }
    let streams = stream_positions(findings);
    let caveat = match unanswered {
        0 => String::new(),
        count => format!(" ({count} of {} fanout pod(s) did not answer)", pods.len()),
    };
    if streams.is_empty() {
        return verdict_of(
            "offline",
            format!("no stream open: the client is offline; it will catch up on reconnect with its cursor{caveat}"),
        );
    }
    let delivered: Vec<&(String, Option<i64>)> =
        streams.iter().filter(|(_, position)| position.is_some_and(|position| position >= event_seq)).collect();
    if let Some((pod, Some(position))) = delivered.first() {
        let of = if streams.len() > 1 {
            format!(" ({} of {} streams)", delivered.len(), streams.len())
        } else {
            String::new()
        };
        return verdict_of(
            "delivered",
            format!("delivered: stream on pod {pod} has event_seq {position} >= {event_seq}{of}"),
        );
    }
    if let Some((pod, Some(position))) = streams.iter().find(|(_, position)| position.is_some()) {
        return verdict_of(
            "behind",
            format!(
                "not yet delivered: the stream on pod {pod} is at event_seq {position} < {event_seq}: it is catching \
                 up from the log or the client reads slowly; nothing is skipped{caveat}"
            ),
        );
    }
    let (pod, _) = &streams[0];
    verdict_of(
        "not_carried",
        format!(
            "not delivered: user {user}'s stream on pod {pod} does not carry group {group} (opened before the join \
             and missed its signal?); the stream picks the group up after the next bus gap, a reconnect does at once"
        ),
    )
}

fn print_findings(findings: &Findings) {
    let (user, group_id) = (findings.user, findings.group_id);
    println!("user {user} and group {group_id}");
    match &findings.group {
        Ok(group) => {
            let settings = group.settings.unwrap_or_default();
            println!(
                "  group        {:?} · {} · owner user {} · {} member(s){}",
                group.title,
                output::group_kind(group.kind),
                group.owner_user_id,
                group.member_count,
                if group.archived_at.is_some() { " · archived" } else { "" }
            );
            println!(
                "  settings     joining {} · posting {} · history {}",
                output::join_policy(settings.join_policy),
                output::post_policy(settings.post_policy),
                output::history(settings.history_visible_to_new_members)
            );
        }
        Err(error) => println!("  group        not readable: {}", error.summary()),
    }
    match &findings.membership {
        Ok(Some(membership)) => {
            let muted = match &membership.muted_until {
                Some(until) => format!("muted until {}", output::time(Some(until))),
                None => "not muted".to_owned(),
            };
            println!(
                "  membership   {} since {} · {muted}",
                output::role(membership.role),
                output::time(membership.joined_at.as_ref())
            );
        }
        Ok(None) => println!("  membership   none"),
        Err(error) => println!("  membership   not readable: {}", error.summary()),
    }
    match &findings.ban {
        Ok(Some(ban)) => println!(
            "  ban          since {} by user {} until {}",
            output::time(ban.banned_at.as_ref()),
            ban.banned_by_user_id,
            output::time(ban.until.as_ref())
        ),
        Ok(None) => println!("  ban          none"),
        Err(error) => println!("  ban          {error}"),
    }
    match &findings.latest {
        Ok(latest) => println!("  group log    latest event_seq {latest}"),
        Err(error) => println!("  group log    {error}"),
    }
    if let Some(event_seq) = findings.event_seq {
        match &findings.update {
            Some(update) => println!("  update       {}", output::update_line(update)),
            None => println!("  update       {event_seq} (not readable or not retained)"),
        }
    }
    match &findings.pods {
        Ok(pods) => {
            println!("  fanout pods  {} address(es)", pods.len());
            for pod in pods {
                match &pod.answer {
                    Ok(listing) => {
                        println!("    {}  pod {}: {} stream(s)", pod.address, listing.pod, listing.streams.len());
                        for stream in &listing.streams {
                            let here = stream.positions.iter().find(|position| position.group_id == group_id);
                            let position = match here {
                                Some(position) => format!("group {group_id} at event_seq {}", position.event_seq),
                                None => format!("does not carry group {group_id}"),
                            };
                            println!(
                                "      stream opened {}: {position} ({} group(s) in all)",
                                output::time(stream.opened_at.as_ref()),
                                stream.positions.len()
                            );
                        }
                    }
                    Err(error) => println!("    {}  no answer: {}", pod.address, error.summary()),
                }
            }
        }
        Err(error) => println!("  fanout pods  {error}"),
    }
}

fn error_json<T>(result: &Result<T, CallError>) -> serde_json::Value {
    match result {
        Ok(_) => serde_json::Value::Null,
        Err(error) => json!(error.summary()),
    }
}

fn findings_json(findings: &Findings, verdict: &Verdict) -> anyhow::Result<serde_json::Value> {
    let group = match &findings.group {
        Ok(group) => output::json_value(group, "fanfare.groups.v1.Group")?,
        Err(_) => serde_json::Value::Null,
    };
    let membership = match &findings.membership {
        Ok(Some(membership)) => output::json_value(membership, "fanfare.groups.v1.Membership")?,
        _ => serde_json::Value::Null,
    };
    let ban = match &findings.ban {
        Ok(Some(ban)) => output::json_value(ban, "fanfare.groups.v1.Ban")?,
        _ => serde_json::Value::Null,
    };
    let update = match &findings.update {
        Some(update) => output::json_value(update, "fanfare.common.v1.Update")?,
        None => serde_json::Value::Null,
    };
    let mut pods = Vec::new();
    if let Ok(answers) = &findings.pods {
        for pod in answers {
            pods.push(match &pod.answer {
                Ok(listing) => json!({
                    "address": pod.address.to_string(),
                    "answer": output::json_value(listing, "fanfare.fanout.v1.ListStreamsResponse")?,
                }),
                Err(error) => json!({ "address": pod.address.to_string(), "error": error.summary() }),
            });
        }
    }
    Ok(json!({
        "user": findings.user.to_string(),
        "groupId": findings.group_id.to_string(),
        "group": group,
        "groupError": error_json(&findings.group),
        "membership": membership,
        "membershipError": error_json(&findings.membership),
        "ban": ban,
        "banError": findings.ban.as_ref().err(),
        "latestEventSeq": findings.latest.as_ref().ok().map(i64::to_string),
        "eventSeq": findings.event_seq.map(|event_seq| event_seq.to_string()),
        "update": update,
        "pods": pods,
        "podsError": findings.pods.as_ref().err(),
        "verdict": { "kind": verdict.kind, "text": verdict.text },
    }))
}
