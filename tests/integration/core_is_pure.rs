//! The deciding core touches nothing: its modules (outside their tests) import no tokio,
//! openssh, git2 or process code. The README's module map names the same modules.

use crate::common::project_root;

/// The core, as the README's module map lists it.
const CORE: &[&str] = &[
    "src/plan",
    "src/diff",
    "src/backend",
    "src/render.rs",
    "src/primitive.rs",
    "src/observed.rs",
    "src/value.rs",
    "src/gate.rs",
    "src/state.rs",
    "src/units.rs",
    "src/diagnostic.rs",
    "src/toml_doc.rs",
    "src/run/decide.rs",
    "src/scaffold.rs",
    "src/uptime",
];

const SHELL_ONLY: &[&str] = &["tokio", "openssh", "git2", "std::process", "Command::new"];

#[test]
fn the_deciding_core_imports_nothing_that_touches() {
    let mut files = Vec::new();
    for entry in CORE {
        let path = project_root().join(entry);
        if path.is_dir() {
            for f in std::fs::read_dir(&path).expect("dir") {
                let f = f.expect("entry").path();
                if f.extension().is_some_and(|x| x == "rs") {
                    files.push(f);
                }
            }
        } else {
            files.push(path);
        }
    }
    assert!(files.len() > 20, "{files:?}");
    let mut found = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).expect("read");
        let code = text.split("#[cfg(test)]").next().unwrap_or("");
        for (n, line) in code.lines().enumerate() {
            let line = line.trim_start();
            if line.starts_with("//") {
                continue;
            }
            for word in SHELL_ONLY {
                if line.contains(word) {
                    found.push(format!("{}:{}: {line}", f.display(), n + 1));
                }
            }
        }
    }
    assert!(found.is_empty(), "{}", found.join("\n"));
}

#[test]
fn the_readme_module_map_names_every_module() {
    let readme = std::fs::read_to_string(project_root().join("README.md")).expect("README");
    let map = readme
        .split("### Module map")
        .nth(1)
        .expect("a `### Module map` section");
    let mut missing = Vec::new();
    for dir in [
        "src",
        "src/plan",
        "src/diff",
        "src/backend",
        "src/cli",
        "src/run",
        "src/transport",
    ] {
        for f in std::fs::read_dir(project_root().join(dir)).expect("dir") {
            let p = f.expect("entry").path();
            if p.extension().is_some_and(|x| x == "rs") {
                let rel = p
                    .strip_prefix(project_root())
                    .expect("inside")
                    .display()
                    .to_string();
                if !map.contains(&format!("`{rel}`")) {
                    missing.push(rel);
                }
            }
        }
    }
    assert!(missing.is_empty(), "not in the module map: {missing:?}");
}
