//! `wavectl completions bash|zsh|fish`: the shell's completion script on stdout.

use std::io::Write;

use clap::CommandFactory;

use crate::cli::Cli;
use crate::exit::Exit;

pub fn run(shell: clap_complete::Shell) -> anyhow::Result<Exit> {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "wavectl", &mut out);
    std::io::stdout().lock().write_all(&out)?;
    Ok(Exit::Ok)
}
