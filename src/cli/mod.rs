//! The command line: clap types, one file per subcommand, and the mapping of every outcome to an
//! exit status.

mod apply;
mod context;
mod diff;
mod history;
mod migrations;
mod progress;
mod render;
mod report;
mod status;
mod unlock;
mod validate;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

pub use context::Context;

#[derive(Debug, Parser)]
#[command(
    name = "wavectl",
    version,
    about = "Roll out and roll back an observability and messaging stack in validated waves"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, clap::Args)]
pub struct Global {
    /// Inventory file (default: the plan repo's inventories/lab.toml, else the built-in lab).
    #[arg(short, long, global = true, value_name = "FILE")]
    pub inventory: Option<PathBuf>,
    /// TOML file of `NAME = "value"` secrets, kept outside the plan repo.
    #[arg(long, global = true, value_name = "FILE", env = "WAVECTL_SECRETS_FILE")]
    pub secrets_file: Option<PathBuf>,
    /// Output format.
    #[arg(long, short, global = true, value_enum, default_value_t = Output::Human)]
    pub output: Output,
    /// Colour in human output.
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Human,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check plan, inventory, templates and migration files offline.
    Validate {
        /// The plan file (e.g. plans/phase2.toml).
        plan: PathBuf,
    },
    /// Print the files the plan would write, offline.
    Render {
        plan: PathBuf,
        /// Only this host.
        #[arg(long)]
        host: Option<String>,
    },
    /// Observe every host and show what apply would change (exit 0 in sync, 2 changes, 1 error).
    Diff { plan: PathBuf },
    /// Apply the plan wave by wave.
    Apply {
        plan: PathBuf,
        /// Do not ask for confirmation on a TTY.
        #[arg(long, short)]
        yes: bool,
        /// Apply from a plan tree with uncommitted changes (the generation is marked dirty).
        #[arg(long)]
        allow_dirty: bool,
    },
    /// Per host: reachable, generation, drift, and each process's state, uptime and restarts.
    Status { plan: PathBuf },
    /// The generations each host recorded: number, commit, who, when.
    History,
    /// Break a stale lock (its apply died), after showing whose it was.
    Unlock {
        host: String,
        /// Do not ask (required when not on a terminal).
        #[arg(long, short)]
        yes: bool,
    },
    /// Schema migrations: status, and the operator's decisions (accept, resolve, baseline).
    #[command(subcommand)]
    Migrations(migrations::Migrations),
}

/// Runs the command line and returns the process exit status.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let ctx = Context::new(&cli.global);
    let result = match &cli.command {
        Command::Validate { plan } => validate::run(&ctx, plan),
        Command::Render { plan, host } => render::run(&ctx, plan, host.as_deref()),
        Command::Diff { plan } => diff::run(&ctx, plan),
        Command::Apply {
            plan,
            yes,
            allow_dirty,
        } => apply::run(
            &ctx,
            plan,
            &apply::Options {
                yes: *yes,
                allow_dirty: *allow_dirty,
            },
        ),
        Command::Status { plan } => status::run(&ctx, plan),
        Command::Migrations(m) => migrations::run(&ctx, m),
        Command::Unlock { host, yes } => unlock::run(&ctx, host, *yes),
        Command::History => history::run(&ctx),
    };
    if let Err(e) = &result
        && !crate::exit::is_broken_pipe(e)
    {
        report::report(e);
    }
    crate::exit::exit_of(&result).into()
}
