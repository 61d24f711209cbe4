//! The human rendering of a change set: per host and wave, one line per change, file diffs
//! indented below. One `fmt` serves colour and plain output.

use std::fmt::{self, Write as _};

use anstyle::{AnsiColor, Style};

use crate::diff::{Change, ChangeSet, FileAction, MigrationAction, ProcessAction, StreamAction};

/// Styles for the rendering; `plain()` has none, for pipes and logs.
#[derive(Debug, Clone, Copy)]
pub struct Palette {
    pub create: Style,
    pub update: Style,
    pub remove: Style,
    pub heading: Style,
    pub problem: Style,
}

impl Palette {
    pub fn plain() -> Self {
        let s = Style::new();
        Palette {
            create: s,
            update: s,
            remove: s,
            heading: s,
            problem: s,
        }
    }

    pub fn colored() -> Self {
        Palette {
            create: AnsiColor::Green.on_default(),
            update: AnsiColor::Yellow.on_default(),
            remove: AnsiColor::Red.on_default(),
            heading: Style::new().bold(),
            problem: AnsiColor::Red.on_default().bold(),
        }
    }
}

pub struct HumanDiff<'a> {
    pub changes: &'a ChangeSet,
    pub palette: Palette,
}

impl fmt::Display for HumanDiff<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = self.palette;
        for host in &self.changes.hosts {
            if host.is_empty() {
                writeln!(
                    f,
                    "{}{}{}: in sync",
                    p.heading.render(),
                    host.host,
                    p.heading.render_reset()
                )?;
                continue;
            }
            writeln!(
                f,
                "{}{}{}",
                p.heading.render(),
                host.host,
                p.heading.render_reset()
            )?;
            for problem in &host.problems {
                writeln!(
                    f,
                    "  {}problem:{} {problem}",
                    p.problem.render(),
                    p.problem.render_reset()
                )?;
            }
            for wave in &host.waves {
                writeln!(f, "  wave {}", wave.wave)?;
                for c in &wave.changes {
                    line(f, c, p)?;
                }
            }
            if !host.removals.is_empty() {
                writeln!(f, "  removed from the plan")?;
                for c in &host.removals {
                    line(f, c, p)?;
                }
            }
        }
        let (mut create, mut update, mut remove) = (0, 0, 0);
        for c in self.changes.changes() {
            match sign(c) {
                '+' => create += 1,
                '-' => remove += 1,
                _ => update += 1,
            }
        }
        for u in &self.changes.unreachable {
            writeln!(
                f,
                "{}{}: unreachable:{} {}",
                p.problem.render(),
                u.host,
                p.problem.render_reset(),
                u.error
            )?;
            if let Some(h) = &u.hint {
                writeln!(f, "  hint: {h}")?;
            }
        }
        let unreachable = match self.changes.unreachable.len() {
            0 => String::new(),
            n => format!("; {n} host(s) unreachable, their changes unknown"),
        };
        if self.changes.is_empty() {
            writeln!(f, "in sync: nothing to do")
        } else {
            writeln!(
                f,
                "{create} to create, {update} to change, {remove} to remove{unreachable}"
            )
        }
    }
}

fn sign(c: &Change) -> char {
    match c {
        Change::File {
            action: FileAction::Create,
            ..
        }
        | Change::Process {
            action: ProcessAction::Start,
            ..
        }
        | Change::Migration {
            action: MigrationAction::Apply,
            ..
        }
        | Change::Stream {
            action: StreamAction::Create,
            ..
        } => '+',
        c if c.is_destructive() => '-',
        _ => '~',
    }
}

fn line(f: &mut fmt::Formatter<'_>, c: &Change, p: Palette) -> fmt::Result {
    let s = sign(c);
    let style = match s {
        '+' => p.create,
        '-' => p.remove,
        _ => p.update,
    };
    let text = match c {
        Change::File {
            path,
            action,
            mode,
            mode_before,
            ..
        } => {
            let what = match action {
                FileAction::Create => format!("create (mode {:04o})", mode.unwrap_or(0)),
                FileAction::Update if mode_before != mode => {
                    format!(
                        "update (mode {:04o} -> {:04o})",
                        mode_before.unwrap_or(0),
                        mode.unwrap_or(0)
                    )
                }
                FileAction::Update => "update".to_string(),
                FileAction::Chmod => format!(
                    "mode {:04o} -> {:04o}",
                    mode_before.unwrap_or(0),
                    mode.unwrap_or(0)
                ),
                FileAction::Delete => "delete".to_string(),
            };
            format!("file {path}: {what}")
        }
        Change::Process {
            name,
            action,
            reason,
        } => {
            let what = match action {
                ProcessAction::Start => "start",
                ProcessAction::Restart => "restart",
                ProcessAction::StopAndRemove => "stop and remove",
            };
            format!("process {name}: {what} ({reason})")
        }
        Change::Migration {
            database,
            id,
            name,
            action,
        } => {
            let what = match action {
                MigrationAction::Apply => "apply",
                MigrationAction::Revert => "revert (down SQL recorded in the database)",
            };
            format!("migration {database} {id:04}_{name}: {what}")
        }
        Change::Stream {
            server,
            name,
            action,
            fields,
        } => {
            let what = match action {
                StreamAction::Create => "create".to_string(),
                StreamAction::Delete => "delete (its messages are lost)".to_string(),
                StreamAction::Update => {
                    let list: Vec<String> = fields
                        .iter()
                        .map(|x| format!("{} {} -> {}", x.field, x.before, x.after))
                        .collect();
                    format!("update {}", list.join(", "))
                }
            };
            format!("stream {name} on {server}: {what}")
        }
    };
    writeln!(
        f,
        "    {}{s} {text}{}",
        style.render(),
        style.render_reset()
    )?;
    if let Change::File { diff: Some(d), .. } = c {
        let mut body = String::new();
        for l in d.lines() {
            let st = match l.chars().next() {
                Some('+') if !l.starts_with("+++") => p.create,
                Some('-') if !l.starts_with("---") => p.remove,
                _ => Style::new(),
            };
            let _ = writeln!(body, "        {}{l}{}", st.render(), st.render_reset());
        }
        f.write_str(&body)?;
    }
    Ok(())
}
