//! The command line: clap types, one file per subcommand, and the mapping of every outcome to an
//! exit status.

mod apply;
mod context;
mod diff;
mod history;
mod migrations;
mod progress;
mod render;
mod status;
mod unlock;
mod validate;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::exit::Exit;

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
    match result {
        Ok(exit) => exit.into(),
        Err(e) if is_broken_pipe(&e) => Exit::Ok.into(),
        Err(e) => {
            report(&e);
            Exit::Error.into()
        }
    }
}

/// Output piped into `head` and closed early is not an error.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain()
        .filter_map(|c| c.downcast_ref::<std::io::Error>())
        .any(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
}

/// `error: ...`, then each cause, then a hint when the error chain carries one.
fn report(e: &anyhow::Error) {
    let mut err = anstream::stderr();
    if let Some(invalid) = e.downcast_ref::<crate::load::Invalid>() {
        let _ = write!(err, "{invalid}");
        let n = invalid.diagnostics.len();
        let _ = writeln!(
            err,
            "error: {n} problem{} found",
            if n == 1 { "" } else { "s" }
        );
        return;
    }
    let _ = writeln!(err, "error: {e}");
    for cause in e.chain().skip(1) {
        let _ = writeln!(err, "caused by: {cause}");
    }
}
