//! The command line: clap types, one file per subcommand, and the mapping of every outcome to an
//! exit status.

mod alerts;
pub mod apply;
mod completions;
mod context;
mod diff;
mod doctor;
mod history;
mod homes;
mod init;
mod man;
mod migrations;
mod progress;
mod render;
mod report;
mod rollback;
mod status;
mod unlock;
mod unpin;
mod uptime_report;
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
    /// Inventory file (default: the plan repo's inventories/lab.toml, else the only file in its
    /// inventories/, else the built-in lab).
    #[arg(short, long, global = true, value_name = "FILE")]
    pub inventory: Option<PathBuf>,
    /// TOML file of `NAME = "value"` secrets, kept outside the plan repo.
    #[arg(long, global = true, value_name = "FILE", env = "WAVECTL_SECRETS_FILE")]
    pub secrets_file: Option<PathBuf>,
    /// ssh_config file for an inventory that names none (default: ssh's own ~/.ssh/config).
    #[arg(long, global = true, value_name = "FILE", env = "WAVECTL_SSH_CONFIG")]
    pub ssh_config: Option<PathBuf>,
    /// Keep each host's ssh connection up this long after the run (e.g. `10m`), for scripted
    /// runs that call wavectl several times in a row: the next run reuses it. A master the
    /// operator's ssh_config provides (ControlPath) is always reused.
    #[arg(long, global = true, value_name = "DURATION", env = "WAVECTL_PERSIST", value_parser = humantime::parse_duration)]
    pub persist: Option<std::time::Duration>,
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

/// What `apply` and `rollback` share: how they ask, preview and take over.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct RunFlags {
    /// Do not ask (required when stdin is not a terminal).
    #[arg(long, short)]
    pub yes: bool,
    /// Show what would change, change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Take over the locks of an apply that died on this machine (journaled).
    #[arg(long)]
    pub force_unlock: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a plan repo for your own machines, commit it and validate it.
    ///
    /// plans/ holds the reference plan adapted to the hosts' names (the first takes mainpc's
    /// role, the second pc2's) or, with --minimal, one hub and one Pushgateway;
    /// inventories/hosts.toml the hosts; templates/ and migrations/ what the plan needs. It
    /// never writes into an existing directory that holds anything.
    Init {
        /// The new repo's directory (created; an empty one is accepted).
        dir: PathBuf,
        /// A machine: NAME=SSH_DEST[,address=IP][,root=PATH] (repeatable; the first takes the
        /// reference plan's mainpc role, the second pc2's). Without it, the hosts of
        /// ~/.ssh/config are offered.
        #[arg(long = "host", value_name = "NAME=SSH_DEST[,address=IP][,root=PATH]")]
        hosts: Vec<String>,
        /// One hub and one Pushgateway on the first host instead of the reference plan.
        #[arg(long)]
        minimal: bool,
    },
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
    /// Check that every host has what the plan needs (exit 0 ready, 1 problems).
    ///
    /// Per host, over one SSH round trip: the programs the plan runs there (with the Debian
    /// package of each one missing), the planned ports (free, or held by wavectl's own
    /// programs), a writable root, disk space under it, the clock against this machine's; and
    /// the secrets the plan needs. Each problem comes with the command that fixes it.
    Doctor { plan: PathBuf },
    /// Apply the plan wave by wave.
    Apply {
        plan: PathBuf,
        #[command(flatten)]
        run: RunFlags,
        /// Apply from a plan tree with uncommitted changes (the generation is marked dirty).
        #[arg(long)]
        allow_dirty: bool,
        /// Apply although a rollback pinned the hosts to another commit, and lift the pin.
        #[arg(long)]
        unpin: bool,
        /// Only this wave (repeatable); the waves before it must be applied.
        #[arg(long, value_name = "NAME")]
        wave: Vec<String>,
        /// Only the waves from this one on (with --to-wave: up to that one).
        #[arg(long, value_name = "NAME")]
        from_wave: Option<String>,
        /// Only the waves up to this one.
        #[arg(long, value_name = "NAME")]
        to_wave: Option<String>,
    },
    /// Apply the plan as git revision REV holds it (plan, templates, migrations), waves in
    /// reverse order, and pin the hosts to it. The inventory comes from the current work tree:
    /// it says where the machines are now.
    Rollback {
        /// A commit, tag (`phase1`), branch, `HEAD~3`, or `previous` (each host's previous
        /// generation's commit; the hosts must agree, or name one with --host).
        #[arg(long, value_name = "REV")]
        to: String,
        /// The plan file, as a path in the work tree (default: the only plan in plans/).
        plan: Option<PathBuf>,
        #[command(flatten)]
        run: RunFlags,
        /// Why: recorded in the pin and shown to whoever meets it.
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
        /// Also delete the JetStream streams the old plan lacks (their messages are lost).
        #[arg(long)]
        delete_streams: bool,
        /// Roll back only this wave of the old plan (repeatable); the rest stays as it is.
        #[arg(long, value_name = "NAME")]
        wave: Vec<String>,
        /// Roll back only these resources: `kind.name`, `kind.*` or `host.NAME` (repeatable).
        #[arg(long, value_name = "SELECTOR")]
        select: Vec<String>,
        /// Roll back only this host (with `previous`: its own previous generation).
        #[arg(long, value_name = "NAME")]
        host: Option<String>,
    },
    /// Lift the pin a rollback left, so that `apply` of other commits runs again.
    Unpin {
        /// The plan file (its hosts are unpinned).
        plan: PathBuf,
        /// Only this host.
        #[arg(long)]
        host: Option<String>,
    },
    /// Per host: reachable, generation, drift, and each process's state, uptime and restarts.
    Status { plan: PathBuf },
    /// What fires now, per alerting hub and alertmanager (exit 0 nothing, 2 something fires).
    Alerts { plan: PathBuf },
    /// Uptime per component over the last N hours, read from the central hub: uptime, outages,
    /// heartbeat coverage, overall against the 99.9 % target (exit 0 met, 2 not met).
    Report {
        plan: PathBuf,
        /// How far back.
        #[arg(long, default_value_t = 168, value_name = "N")]
        hours: u64,
        /// The hub to read (default: the one other hubs remote-write to, else the first).
        #[arg(long, value_name = "NAME")]
        hub: Option<String>,
        /// Also draw the timeline of every component into this SVG file.
        #[arg(long, value_name = "FILE")]
        svg: Option<PathBuf>,
    },
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
    /// Print the shell completion script (e.g. `wavectl completions bash >
    /// /etc/bash_completion.d/wavectl`).
    Completions {
        #[arg(value_enum)]
        shell: CompletionShell,
    },
    /// Write one man page per subcommand into DIR (for packaging).
    #[command(hide = true)]
    Man { dir: PathBuf },
}

/// The shells `completions` writes for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CompletionShell {
    Bash,
    Zsh,
    Fish,
}

impl CompletionShell {
    fn shell(self) -> clap_complete::Shell {
        match self {
            CompletionShell::Bash => clap_complete::Shell::Bash,
            CompletionShell::Zsh => clap_complete::Shell::Zsh,
            CompletionShell::Fish => clap_complete::Shell::Fish,
        }
    }
}

/// Runs the command line and returns the process exit status.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let ctx = Context::new(&cli.global);
    let result = match &cli.command {
        Command::Init {
            dir,
            hosts,
            minimal,
        } => init::run(
            &ctx,
            &init::Args {
                dir,
                hosts,
                minimal: *minimal,
            },
        ),
        Command::Validate { plan } => validate::run(&ctx, plan),
        Command::Render { plan, host } => render::run(&ctx, plan, host.as_deref()),
        Command::Diff { plan } => diff::run(&ctx, plan),
        Command::Doctor { plan } => doctor::run(&ctx, plan),
        Command::Apply {
            plan,
            run,
            allow_dirty,
            unpin,
            wave,
            from_wave,
            to_wave,
        } => apply::run(
            &ctx,
            plan,
            &apply::Options {
                yes: run.yes,
                allow_dirty: *allow_dirty,
                unpin: *unpin,
                dry_run: run.dry_run,
                force_unlock: run.force_unlock,
                waves: crate::run::decide::WaveSelection {
                    waves: wave.clone(),
                    from: from_wave.clone(),
                    to: to_wave.clone(),
                },
                select: Vec::new(),
                host: None,
                rollback: None,
            },
        ),
        Command::Rollback {
            to,
            plan,
            run,
            reason,
            delete_streams,
            wave,
            select,
            host,
        } => rollback::run(
            &ctx,
            &rollback::Args {
                to,
                plan: plan.as_deref(),
                run: *run,
                reason: reason.as_deref(),
                delete_streams: *delete_streams,
                waves: wave,
                select,
                host: host.as_deref(),
            },
        ),
        Command::Unpin { plan, host } => unpin::run(&ctx, plan, host.as_deref()),
        Command::Status { plan } => status::run(&ctx, plan),
        Command::Alerts { plan } => alerts::run(&ctx, plan),
        Command::Report {
            plan,
            hours,
            hub,
            svg,
        } => uptime_report::run(
            &ctx,
            &uptime_report::Args {
                plan,
                hours: *hours,
                hub: hub.as_deref(),
                svg: svg.as_deref(),
            },
        ),
        Command::Migrations(m) => migrations::run(&ctx, m),
        Command::Unlock { host, yes } => unlock::run(&ctx, host, *yes),
        Command::History => history::run(&ctx),
        Command::Completions { shell } => completions::run(shell.shell()),
        Command::Man { dir } => man::run(dir),
    };
    if let Err(e) = &result
        && !crate::exit::is_broken_pipe(e)
    {
        report::report(e);
    }
    crate::exit::exit_of(&result).into()
}
