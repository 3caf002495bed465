//! `fanfare ctl jobs …`: start, read, list, cancel and watch a creator's fan-out jobs
//! (acting as the creator, `--as-user`).

use std::io::{IsTerminal as _, Write as _};
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};
use fanfare_proto::fanout::v1 as pb;
use fanfare_proto::fanout::v1::{FanoutJobKind, FanoutJobState};

use super::client::{Ctl, as_user, call};
use super::stop::{Limits, Stop, Stopped};
use super::{output, positive_id};

/// Width of the progress bar, in characters.
const BAR_WIDTH: usize = 30;

#[derive(Debug, Subcommand)]
pub(super) enum JobsCommand {
    /// Start notifying every follower of --as-user (a creator).
    Start(StartArgs),
    /// One job, with its progress.
    Get {
        /// The job.
        #[arg(value_parser = positive_id())]
        job: i64,
    },
    /// --as-user's jobs, newest first (all pages).
    List,
    /// Cancel a pending or running job; followers already notified stay notified.
    Cancel {
        /// The job.
        #[arg(value_parser = positive_id())]
        job: i64,
    },
    /// Show a job's progress until it succeeds (exit 0) or is cancelled (exit 1).
    Watch(WatchArgs),
}

/// What a job announces.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(super) enum KindArg {
    /// An invitation to a new group (the payload is the group id).
    Invitation,
    /// A broadcast notification (the payload is what the push service shows).
    Broadcast,
}

#[derive(Debug, Args)]
pub(super) struct StartArgs {
    /// What the job announces.
    #[arg(long, value_enum)]
    kind: KindArg,
    /// What it refers to (payload_ref): the group id, the post.
    #[arg(long)]
    payload: String,
    /// The idempotency key; a new UUID when left out. Starting again with the same key
    /// returns the same job.
    #[arg(long)]
    key: Option<String>,
    /// Followers per second; the server's default when left out.
    #[arg(long, value_parser = clap::value_parser!(i32).range(1..))]
    rate: Option<i32>,
    /// Then watch its progress (as `jobs watch`).
    #[arg(long)]
    watch: bool,
    #[command(flatten)]
    polling: Polling,
}

#[derive(Debug, Args)]
pub(super) struct WatchArgs {
    /// The job.
    #[arg(value_parser = positive_id())]
    job: i64,
    #[command(flatten)]
    polling: Polling,
}

/// How `watch` polls.
#[derive(Debug, Clone, Copy, Args)]
struct Polling {
    /// Milliseconds between two reads of the job.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(10..))]
    interval_ms: u64,
    /// Stop watching after this many seconds (the job goes on).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    timeout: Option<u64>,
}

/// Runs one `jobs` command.
pub(super) async fn run(ctl: &Ctl, command: JobsCommand) -> anyhow::Result<()> {
    match command {
        JobsCommand::Start(args) => start(ctl, args).await,
        JobsCommand::Get { job } => {
            let job = get(ctl, job).await?;
            if ctl.json() {
                return output::print_json(
                    &pb::GetFanoutJobResponse { job: Some(job) },
                    "fanfare.fanout.v1.GetFanoutJobResponse",
                );
            }
            print_job(&job);
            Ok(())
        }
        JobsCommand::List => list(ctl).await,
        JobsCommand::Cancel { job } => cancel(ctl, job).await,
        JobsCommand::Watch(args) => watch(ctl, args.job, args.polling).await,
    }
}

async fn start(ctl: &Ctl, args: StartArgs) -> anyhow::Result<()> {
    let actor = ctl.actor()?;
    let kind = match args.kind {
        KindArg::Invitation => FanoutJobKind::NewGroupInvitation,
        KindArg::Broadcast => FanoutJobKind::BroadcastNotification,
    };
    let request = pb::StartFanoutJobRequest {
        kind: kind.into(),
        payload_ref: args.payload,
        idempotency_key: args.key.unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
        rate_limit_per_second: args.rate.unwrap_or(0),
    };
    let mut target = ctl.fanout();
    let started = call("StartFanoutJob", &target.url, target.client.start_fanout_job(as_user(actor, request))).await?;
    let Some(job) = started.job.clone() else { anyhow::bail!("StartFanoutJob answered without a job") };
    if ctl.json() {
        output::print_json(&started, "fanfare.fanout.v1.StartFanoutJobResponse")?;
    } else {
        match started.created {
            true => println!("started job {}", job.job_id),
            false => println!("job {} already exists for key {:?}", job.job_id, job.idempotency_key),
        }
        print_job(&job);
    }
    if args.watch {
        return watch(ctl, job.job_id, args.polling).await;
    }
    Ok(())
}

async fn get(ctl: &Ctl, job: i64) -> anyhow::Result<pb::FanoutJob> {
    let actor = ctl.actor()?;
    let mut target = ctl.fanout();
    let request = as_user(actor, pb::GetFanoutJobRequest { job_id: job });
    let read = call("GetFanoutJob", &target.url, target.client.get_fanout_job(request)).await?;
    read.job.ok_or_else(|| anyhow::anyhow!("GetFanoutJob answered without a job"))
}

async fn list(ctl: &Ctl) -> anyhow::Result<()> {
    let actor = ctl.actor()?;
    let mut all = pb::ListFanoutJobsResponse::default();
    let mut page_token = String::new();
    loop {
        let mut target = ctl.fanout();
        let request = as_user(actor, pb::ListFanoutJobsRequest { page_size: 1000, page_token });
        let page = call("ListFanoutJobs", &target.url, target.client.list_fanout_jobs(request)).await?;
        all.jobs.extend(page.jobs);
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    if ctl.json() {
        return output::print_json(&all, "fanfare.fanout.v1.ListFanoutJobsResponse");
    }
    println!("{:<10} {:<10} {:<24} {:>15}  {:<28} payload", "job", "state", "kind", "done/total", "created");
    for job in &all.jobs {
        println!(
            "{:<10} {:<10} {:<24} {:>15}  {:<28} {:?}",
            job.job_id,
            output::job_state(job.state),
            output::job_kind(job.kind),
            format!("{}/{}", job.followers_done, job.followers_total),
            output::time(job.created_at.as_ref()),
            job.payload_ref
        );
    }
    println!("{} job(s) of user {actor}", all.jobs.len());
    Ok(())
}

async fn cancel(ctl: &Ctl, job: i64) -> anyhow::Result<()> {
    let actor = ctl.actor()?;
    let mut target = ctl.fanout();
    let request = as_user(actor, pb::CancelFanoutJobRequest { job_id: job });
    let cancelled = call("CancelFanoutJob", &target.url, target.client.cancel_fanout_job(request)).await?;
    if ctl.json() {
        return output::print_json(&cancelled, "fanfare.fanout.v1.CancelFanoutJobResponse");
    }
    if let Some(job) = &cancelled.job {
        print_job(job);
    }
    Ok(())
}

/// A job as a short block of `name value` lines.
fn print_job(job: &pb::FanoutJob) {
    println!(
        "job {} · {} {:?} · {}",
        job.job_id,
        output::job_kind(job.kind),
        job.payload_ref,
        output::job_state(job.state)
    );
    println!("  creator    user {}", job.creator_user_id);
    println!("  key        {:?}", job.idempotency_key);
    println!("  progress   {} of {} followers ({}%)", job.followers_done, job.followers_total, percent(job));
    println!("  rate       {:.0} followers/s (limit {}/s)", job.followers_per_second, job.rate_limit_per_second);
    println!("  eta        {}", eta(job));
    println!("  created    {}", output::time(job.created_at.as_ref()));
    println!("  started    {}", output::time(job.started_at.as_ref()));
    println!("  finished   {}", output::time(job.finished_at.as_ref()));
}

fn finished(job: &pb::FanoutJob) -> bool {
    matches!(FanoutJobState::try_from(job.state), Ok(FanoutJobState::Succeeded | FanoutJobState::Cancelled))
}

/// How far the job is, 0.0 to 1.0 (`done` may pass `total`: followers gained meanwhile).
fn fraction(job: &pb::FanoutJob) -> f64 {
    if job.followers_total <= 0 {
        return if finished(job) { 1.0 } else { 0.0 };
    }
    (job.followers_done.max(0) as f64 / job.followers_total as f64).clamp(0.0, 1.0)
}

fn percent(job: &pb::FanoutJob) -> u32 {
    (fraction(job) * 100.0).floor() as u32
}

/// `1h02m03s`, `4m05s`, `7s`; `-` when unknown or finished.
fn eta(job: &pb::FanoutJob) -> String {
    let seconds = job.eta_seconds;
    if seconds <= 0 {
        return "-".to_owned();
    }
    let (hours, minutes, seconds) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
    match (hours, minutes) {
        (0, 0) => format!("{seconds}s"),
        (0, _) => format!("{minutes}m{seconds:02}s"),
        _ => format!("{hours}h{minutes:02}m{seconds:02}s"),
    }
}

/// `job 7 [#########-----] 512/1000  51% · 1234/s · ETA 4s · RUNNING`.
fn progress_line(job: &pb::FanoutJob) -> String {
    let filled = ((fraction(job) * BAR_WIDTH as f64).round() as usize).min(BAR_WIDTH);
    let bar = format!("{}{}", "#".repeat(filled), "-".repeat(BAR_WIDTH - filled));
    format!(
        "job {} [{bar}] {}/{} {:>3}% · {:.0}/s · ETA {} · {}",
        job.job_id,
        job.followers_done,
        job.followers_total,
        percent(job),
        job.followers_per_second,
        eta(job),
        output::job_state(job.state)
    )
}

/// Polls the job and shows its progress: redrawn in place on a terminal, a line per poll
/// otherwise (or a JSON object per poll with --json). Ends when the job finishes.
async fn watch(ctl: &Ctl, job_id: i64, polling: Polling) -> anyhow::Result<()> {
    let stop = Stop::new(Limits { count: None, timeout: polling.timeout });
    let in_place = !ctl.json() && std::io::stdout().is_terminal();
    loop {
        let job = match stop.run(get(ctl, job_id)).await {
            Ok(job) => job?,
            Err(stopped) => return stopped_watching(stopped, job_id, in_place),
        };
        if ctl.json() {
            output::print_json_line(&job, "fanfare.fanout.v1.FanoutJob")?;
        } else if in_place {
            print!("\r\x1b[2K{}", progress_line(&job));
            std::io::stdout().flush()?;
        } else {
            println!("{}", progress_line(&job));
        }
        if finished(&job) {
            if in_place {
                println!();
            }
            if job.state == FanoutJobState::Cancelled as i32 {
                anyhow::bail!(
                    "job {job_id} was cancelled after notifying {} of {} followers",
                    job.followers_done,
                    job.followers_total
                );
            }
            return Ok(());
        }
        if let Err(stopped) = stop.run(tokio::time::sleep(Duration::from_millis(polling.interval_ms))).await {
            return stopped_watching(stopped, job_id, in_place);
        }
    }
}

/// Ctrl-C or --timeout: the job goes on; say how to come back to it.
fn stopped_watching(stopped: Stopped, job_id: i64, in_place: bool) -> anyhow::Result<()> {
    if in_place {
        println!();
    }
    let why = match stopped {
        Stopped::Interrupted => "interrupted",
        Stopped::TimedOut => "timed out",
    };
    eprintln!("{why}: stopped watching; job {job_id} goes on (fanfare ctl jobs watch {job_id})");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_progress_line_shows_done_total_rate_eta_and_state() {
        let job = pb::FanoutJob {
            job_id: 7,
            state: FanoutJobState::Running as i32,
            followers_total: 1000,
            followers_done: 512,
            followers_per_second: 1234.4,
            eta_seconds: 3725,
            ..Default::default()
        };
        let line = progress_line(&job);
        assert_eq!(line, "job 7 [###############---------------] 512/1000  51% · 1234/s · ETA 1h02m05s · RUNNING");
        let empty = pb::FanoutJob { state: FanoutJobState::Succeeded as i32, ..Default::default() };
        assert!(progress_line(&empty).contains("100%"), "no followers and done: {}", progress_line(&empty));
    }
}
