//! `wavectl man DIR` (hidden, for packaging): one man page per subcommand, `wavectl.1`,
//! `wavectl-apply.1`, `wavectl-migrations-status.1`, ...

use std::path::Path;

use anyhow::Context as _;
use clap::CommandFactory;

use crate::cli::Cli;
use crate::exit::Exit;

pub fn run(dir: &Path) -> anyhow::Result<Exit> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    clap_mangen::generate_to(Cli::command(), dir)
        .with_context(|| format!("cannot write the man pages into {}", dir.display()))?;
    let count = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(".1"))
        .count();
    println!("{count} man pages in {}", dir.display());
    Ok(Exit::Ok)
}
