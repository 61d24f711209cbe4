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

/// The plan repo as a git commit holds it, read from git objects: the work tree and the index
/// are never touched (for `rollback --to REV`).
pub struct GitTree {
    repo: git2::Repository,
    tree: git2::Oid,
    /// The full commit id REV resolved to.
    pub commit: String,
    /// How the operator named the revision (`phase1`, `HEAD~3`, a sha).
    pub rev: String,
    /// The commit's subject line.
    pub subject: Option<String>,
    /// The built-in templates a generation of this commit recorded, when one did: the plan
    /// then renders with them, not with this binary's.
    pub builtins: Option<std::collections::BTreeMap<String, String>>,
}

impl GitTree {
    /// Opens the repository at `root` and resolves `rev` (any git revision) to its commit.
    pub fn open(root: &Path, rev: &str) -> Result<GitTree, git2::Error> {
        let repo = git2::Repository::open(root)?;
        let (tree, id, subject) = {
            let commit = repo.revparse_single(rev)?.peel_to_commit()?;
            let subject = commit.summary().ok().flatten().map(str::to_string);
            (commit.tree_id(), commit.id().to_string(), subject)
        };
        Ok(GitTree {
            repo,
            tree,
            commit: id,
            rev: rev.to_string(),
            subject,
            builtins: None,
        })
    }

    fn entry(&self, path: &str) -> io::Result<Option<git2::Object<'_>>> {
        let to_io = |e: git2::Error| io::Error::other(e.message().to_string());
        let tree = self.repo.find_tree(self.tree).map_err(to_io)?;
        if path.is_empty() || path == "." {
            return Ok(Some(tree.into_object()));
        }
        match tree.get_path(Path::new(path)) {
            Ok(entry) => entry.to_object(&self.repo).map(Some).map_err(to_io),
            Err(e) if e.code() == git2::ErrorCode::NotFound => Ok(None),
            Err(e) => Err(to_io(e)),
        }
    }
}

impl PlanRepo for GitTree {
    fn read(&self, path: &str) -> io::Result<Option<String>> {
        match self.entry(path)?.and_then(|o| o.into_blob().ok()) {
            Some(blob) => utf8(blob.content().to_vec()).map(Some),
            None => Ok(None),
        }
    }

    fn list(&self, dir: &str) -> io::Result<Option<Vec<String>>> {
        let Some(tree) = self.entry(dir)?.and_then(|o| o.into_tree().ok()) else {
            return Ok(None);
        };
        let mut names: Vec<String> = tree
            .iter()
            .filter(|e| e.kind() == Some(git2::ObjectType::Blob))
            .filter_map(|e| e.name().ok().map(str::to_string))
            .collect();
        names.sort();
        Ok(Some(names))
    }

    fn display(&self, path: &str) -> String {
        let short: String = self.commit.chars().take(12).collect();
        format!("{}@{short}:{path}", self.rev)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn git(dir: &Path, args: &[&str]) {
        let ok = std::process::Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@t.invalid"])
            .args(args)
            .current_dir(dir)
            .status()
            .unwrap()
            .success();
        assert!(ok, "git {args:?}");
    }

    #[test]
    fn a_git_tree_reads_an_old_commit_without_touching_the_work_tree_or_index() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        git(d, &["init", "-q", "-b", "main"]);
        std::fs::create_dir_all(d.join("plans")).unwrap();
        std::fs::write(d.join("plans/p.toml"), "old\n").unwrap();
        std::fs::write(d.join("plans/only-old.toml"), "x\n").unwrap();
        git(d, &["add", "-A"]);
        git(d, &["commit", "-q", "-m", "one"]);
        git(d, &["tag", "phase1"]);
        std::fs::write(d.join("plans/p.toml"), "new\n").unwrap();
        std::fs::remove_file(d.join("plans/only-old.toml")).unwrap();
        git(d, &["add", "-A"]);
        git(d, &["commit", "-q", "-m", "two"]);
        std::fs::write(d.join("plans/p.toml"), "edited, not staged\n").unwrap();
        let index_before = std::fs::read(d.join(".git/index")).unwrap();

        let old = GitTree::open(d, "phase1").unwrap();
        assert_eq!(old.read("plans/p.toml").unwrap().as_deref(), Some("old\n"));
        assert_eq!(
            old.list("plans").unwrap(),
            Some(vec!["only-old.toml".to_string(), "p.toml".to_string()])
        );
        assert_eq!(old.read("plans/none.toml").unwrap(), None);
        assert_eq!(GitTree::open(d, "HEAD~1").unwrap().commit, old.commit);
        assert!(old.display("plans/p.toml").starts_with("phase1@"));

        assert_eq!(
            std::fs::read_to_string(d.join("plans/p.toml")).unwrap(),
            "edited, not staged\n"
        );
        assert_eq!(std::fs::read(d.join(".git/index")).unwrap(), index_before);
        assert!(GitTree::open(d, "no-such-rev").is_err());
    }
}
