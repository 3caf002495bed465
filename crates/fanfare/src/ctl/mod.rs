//! `fanfare ctl`: the operator's command line. It calls the services over gRPC like any
//! other caller (the service token, the acting user in `x-fanfare-user-id`) and reads the
//! same environment they do (`FANFARE_GROUPS_URL`, `FANFARE_MESSAGES_URL`,
//! `FANFARE_FANOUT_URL`, `FANFARE_SERVICE_TOKEN`), so it works from a laptop against
//! `fanfare dev` and from a pod in the cluster alike. A failed call prints its gRPC status
//! and exits non-zero. docs/operations.md shows it in use.

mod client;
mod explain;
mod follows;
mod groups;
mod jobs;
mod messages;
mod output;
mod stop;
mod subscribe;

use clap::{Args, Subcommand};

use self::client::Ctl;

/// Options and command of `fanfare ctl`.
#[derive(Debug, Args)]
pub(crate) struct CtlArgs {
    #[command(flatten)]
    connection: client::ConnectionArgs,
    #[command(subcommand)]
    command: CtlCommand,
}

#[derive(Debug, Subcommand)]
enum CtlCommand {
    /// Create and read groups, list and change members, list a user's groups.
    #[command(subcommand)]
    Groups(groups::GroupsCommand),
    /// Post a message to a group as --as-user.
    Send(messages::SendArgs),
    /// Print updates as they arrive: a group's log, or a user's live stream.
    #[command(subcommand)]
    Tail(TailCommand),
    /// Make --as-user follow a creator.
    Follow {
        /// The creator.
        #[arg(value_parser = positive_id())]
        creator: i64,
    },
    /// Make --as-user stop following a creator.
    Unfollow {
        /// The creator.
        #[arg(value_parser = positive_id())]
        creator: i64,
    },
    /// Start, read, list, cancel and watch --as-user's fan-out jobs.
    #[command(subcommand)]
    Jobs(jobs::JobsCommand),
    /// Why a user did or did not receive a group's update: membership, ban, the group's
    /// log, and what every fanout pod's streams of the user delivered.
    Explain(explain::ExplainArgs),
}

#[derive(Debug, Subcommand)]
enum TailCommand {
    /// Poll a group's update log (GetUpdates, as --as-user) and print each update.
    Group(messages::TailGroupArgs),
    /// Open a user's live stream (fanout Subscribe, as that user) and print every frame.
    User(subscribe::TailUserArgs),
}

/// A positive id on the command line (group, user, job).
fn positive_id() -> clap::builder::RangedI64ValueParser<i64> {
    clap::value_parser!(i64).range(1..)
}

/// Runs one `fanfare ctl` command. A failure is printed as `error: …` (for a failed call:
/// the method, the URL, the gRPC status code and message, and the error details) and the
/// process exits with status 1, without the backtrace `RUST_BACKTRACE` would add.
pub(crate) async fn run(args: CtlArgs) -> anyhow::Result<()> {
    if let Err(error) = dispatch(args).await {
        eprintln!("error: {error:#}");
        std::process::exit(1);
    }
    Ok(())
}

async fn dispatch(args: CtlArgs) -> anyhow::Result<()> {
    let ctl = Ctl::new(args.connection)?;
    match args.command {
        CtlCommand::Groups(command) => groups::run(&ctl, command).await,
        CtlCommand::Send(send) => messages::send(&ctl, send).await,
        CtlCommand::Tail(TailCommand::Group(tail)) => messages::tail_group(&ctl, tail).await,
        CtlCommand::Tail(TailCommand::User(tail)) => subscribe::tail_user(&ctl, tail).await,
        CtlCommand::Follow { creator } => follows::follow(&ctl, creator).await,
        CtlCommand::Unfollow { creator } => follows::unfollow(&ctl, creator).await,
        CtlCommand::Jobs(command) => jobs::run(&ctl, command).await,
        CtlCommand::Explain(explain) => explain::explain(&ctl, explain).await,
    }
}
