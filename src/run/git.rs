//! The plan repo's git state: which commit a generation is made from, and whether the tree has
//! changes that no commit holds.

use std::path::Path;

use git2::{Repository, StatusOptions};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlanCommit {
    /// `None` when the plan is not in a git repository.
    pub commit: Option<String>,
    /// Modified or untracked files in the repo.
    pub dirty: bool,
    pub dirty_files: Vec<String>,
    /// The commit's subject line.
    pub subject: Option<String>,
}

pub fn plan_commit(repo_root: &Path) -> Result<PlanCommit, git2::Error> {
    let repo = match Repository::open(repo_root) {
        Ok(r) => r,
        Err(e) if e.code() == git2::ErrorCode::NotFound => {
            return Ok(PlanCommit {
                commit: None,
                dirty: true,
                dirty_files: vec![],
                subject: None,
            });
        }
        Err(e) => return Err(e),
    };
    let head = repo.head().ok().and_then(|h| h.peel_to_commit().ok());
    let commit = head.as_ref().map(|c| c.id().to_string());
    let subject = head
        .as_ref()
        .and_then(|c| c.summary().ok().flatten().map(str::to_string));
    let mut opts = StatusOptions::new();
    opts.include_untracked(true)
        .recurse_untracked_dirs(true)
        .include_ignored(false);
    let dirty_files: Vec<String> = repo
        .statuses(Some(&mut opts))?
        .iter()
        .filter_map(|s| s.path().ok().map(str::to_string))
        .collect();
    Ok(PlanCommit {
        commit,
        dirty: !dirty_files.is_empty(),
        dirty_files,
        subject,
    })
}
