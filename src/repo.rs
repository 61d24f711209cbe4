//! Reading the plan repo: the work tree now, a git commit's tree later, behind one trait so
//! that everything above it is the same code for `apply` and `rollback --to REV`.

use std::io;
use std::path::{Path, PathBuf};

/// Read access to the files of a plan repo, by paths relative to its root.
pub trait PlanRepo {
    /// The file's text, `None` when it does not exist.
    fn read(&self, path: &str) -> io::Result<Option<String>>;
    /// File names directly in a directory (sorted), `None` when it does not exist.
    fn list(&self, dir: &str) -> io::Result<Option<Vec<String>>>;
    /// How paths of this repo are shown to the operator.
    fn display(&self, path: &str) -> String;
}

/// `bytes` as text; otherwise an error naming the line and column of the first byte that is
/// not UTF-8.
pub fn utf8(bytes: Vec<u8>) -> io::Result<String> {
    String::from_utf8(bytes).map_err(|e| {
        let good = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line = good.iter().filter(|b| **b == b'\n').count() + 1;
        let line_start = good.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        let column = String::from_utf8_lossy(&good[line_start..]).chars().count() + 1;
        let byte = e.as_bytes().get(good.len()).copied().unwrap_or(0);
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "line {line}, column {column}: byte 0x{byte:02x} is not UTF-8, expected UTF-8 text"
            ),
        )
    })
}

/// The plan repo as checked out on disk.
pub struct WorkTree {
    root: PathBuf,
    /// Prefix that makes displayed paths relative to the operator's working directory.
    shown_root: String,
}

impl WorkTree {
    pub fn new(root: PathBuf, shown_root: String) -> Self {
        WorkTree { root, shown_root }
    }

    /// The repo holding a plan file: the nearest ancestor with `.git`, else the parent of a
    /// `plans/` directory, else the plan's own directory. Returns the repo and the plan's path
    /// inside it.
    pub fn for_plan(plan: &Path) -> (WorkTree, String) {
        let dir = plan
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let abs = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
        let git_root = abs
            .ancestors()
            .find(|a| a.join(".git").exists())
            .map(Path::to_path_buf);
        let root = git_root.unwrap_or_else(|| {
            if abs.file_name().is_some_and(|n| n == "plans") {
                abs.parent().unwrap_or(&abs).to_path_buf()
            } else {
                abs.clone()
            }
        });
        let file_name = plan
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let inside = abs
            .strip_prefix(&root)
            .unwrap_or(Path::new(""))
            .join(file_name);
        // Show paths the way the operator named the plan: `plans/phase2.toml` stays that.
        let shown_root = plan
            .to_string_lossy()
            .strip_suffix(&*inside.to_string_lossy())
            .map(str::to_string)
            .unwrap_or_else(|| format!("{}/", root.display()));
        (
            WorkTree { root, shown_root },
            inside.to_string_lossy().into_owned(),
        )
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
}

impl PlanRepo for WorkTree {
    fn read(&self, path: &str) -> io::Result<Option<String>> {
        match std::fs::read(self.root.join(path)) {
            Ok(bytes) => utf8(bytes).map(Some),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn list(&self, dir: &str) -> io::Result<Option<Vec<String>>> {
        let rd = match std::fs::read_dir(self.root.join(dir)) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut names = Vec::new();
        for entry in rd {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                names.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        names.sort();
        Ok(Some(names))
    }

    fn display(&self, path: &str) -> String {
        format!("{}{path}", self.shown_root)
    }
}
