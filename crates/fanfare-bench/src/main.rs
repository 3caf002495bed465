//! `fanfare-bench` (`make bench`): runs each service's benchmark workload on Postgres beside
//! raw baselines taken in the same run, prints the figures, and rewrites
//! `docs/benchmarks.md`.
//!
//! One module per service (`groups`, `messages`, `fanout`) runs its workload and returns a
//! [`report::Section`]; the [`report::Report`] puts each between markers in the file with
//! its own run details (date, command, machine, load, Postgres), so `--only` reruns one
//! section and keeps the others' figures. A new service adds its module, its flags to
//! [`Cli`], a [`Bench`] value and one arm in `main`. A benchmark, not a test: no figure
//! decides anything.

mod cpu;
mod driver;
mod fanout;
mod groups;
mod machine;
mod messages;
mod report;

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use fanfare_testkit::TestDatabase;

use crate::machine::Machine;
use crate::report::{Report, SectionClock};

/// Benchmarks Fanfare services on Postgres against raw-statement baselines.
#[derive(Debug, Parser)]
#[command(name = "fanfare-bench", version)]
struct Cli {
    /// Rewrite this Markdown file with the results (`make bench` passes
    /// docs/benchmarks.md): the sections run here replace theirs, the others are kept.
    /// Unset to print only.
    #[arg(long)]
    output: Option<PathBuf>,

    /// Run only this benchmark (default: all of them, in order).
    #[arg(long, value_enum)]
    only: Option<Bench>,

    #[command(flatten, next_help_heading = "Groups benchmark")]
    groups: groups::GroupsArgs,

    #[command(flatten, next_help_heading = "Messages benchmark")]
    messages: messages::MessagesArgs,

    #[command(flatten, next_help_heading = "Fanout benchmark")]
    fanout: fanout::FanoutArgs,

    #[command(subcommand)]
    helper: Option<Helper>,
}

/// Processes the benchmarks start, not for people to run.
#[derive(Debug, Subcommand)]
enum Helper {
    /// The fanout benchmark's baseline: a minimal tonic server-streaming server.
    #[command(hide = true)]
    MinimalStreamServer {
        /// Address to serve on.
        #[arg(long)]
        listen: SocketAddr,
    },
}

/// The benchmarks, in the order a full run takes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Bench {
    /// Joins into one BROADCAST group up to a million members; membership lookups.
    Groups,
    /// SendMessage throughput and latency (W4), the hot group and the naive counter.
    Messages,
    /// Live delivery to Subscribe streams (W1, W2) beside Redis and tonic baselines; fan-out jobs (W3).
    Fanout,
}

impl Bench {
    /// The section's key in the report file.
    fn key(self) -> &'static str {
        match self {
            Self::Groups => "groups",
            Self::Messages => "messages",
            Self::Fanout => "fanout",
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(Helper::MinimalStreamServer { listen }) = cli.helper {
        return fanout::minimal::serve(listen).await;
    }
    let machine = {
        // A throwaway database on the server every benchmark uses (`DATABASE_URL`).
        let database = TestDatabase::create().await?;
        Machine::probe(&database.options()).await?
    };
    let mut report = Report::start(machine, command_line());

    for bench in Bench::value_variants().iter().copied().filter(|bench| cli.only.is_none_or(|only| only == *bench)) {
        let clock = SectionClock::start();
        let section = match bench {
            Bench::Groups => groups::run(&cli.groups).await.context("running the groups benchmark")?,
            Bench::Messages => messages::run(&cli.messages).await.context("running the messages benchmark")?,
            Bench::Fanout => fanout::run(&cli.fanout).await.context("running the fanout benchmark")?,
        };
        report.push(bench.key(), section, clock);
        // Written after each section, so a later failure keeps the figures already taken.
        if let Some(path) = &cli.output {
            report.write(path)?;
            eprintln!("wrote the {} section to {}", bench.key(), path.display());
        }
    }

    println!("{}", report.to_markdown());
    Ok(())
}

/// The command as the report shows it.
fn command_line() -> String {
    let args: Vec<String> = std::env::args().skip(1).collect();
    format!("cargo run --release -p fanfare-bench -- {}", args.join(" "))
}
