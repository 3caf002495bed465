//! `fanfare-bench` (`make bench`): runs each service's benchmark workload on Postgres beside
//! raw baselines taken in the same run, prints the figures, and rewrites
//! `docs/benchmarks.md`.
//!
//! One module per service (`groups`, …) runs its workload and returns a
//! [`report::Section`]; the [`report::Report`] adds the header (method, machine, Postgres,
//! date, command). A new service adds its module, its flags to [`Cli`], and one line in
//! `main`. A benchmark, not a test: no figure decides anything.

mod cpu;
mod driver;
mod groups;
mod machine;
mod report;

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use fanfare_testkit::TestDatabase;

use crate::machine::Machine;
use crate::report::Report;

/// Benchmarks Fanfare services on Postgres against raw-statement baselines.
#[derive(Debug, Parser)]
#[command(name = "fanfare-bench", version)]
struct Cli {
    /// Rewrite this Markdown file with the results (`make bench` passes
    /// docs/benchmarks.md); unset to print only.
    #[arg(long)]
    output: Option<PathBuf>,

    #[command(flatten)]
    groups: groups::GroupsArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let machine = {
        // A throwaway database on the server every benchmark uses (`DATABASE_URL`).
        let database = TestDatabase::create().await?;
        Machine::probe(&database.options()).await?
    };
    let mut report = Report::start(machine, command_line());

    let groups = groups::run(&cli.groups).await.context("running the groups benchmark")?;
    report.push(groups);

    report.finish();
    println!("{}", report.to_markdown());
    if let Some(path) = &cli.output {
        report.write(path)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

/// The command as the report shows it.
fn command_line() -> String {
    let args: Vec<String> = std::env::args().skip(1).collect();
    format!("cargo run --release -p fanfare-bench -- {}", args.join(" "))
}
