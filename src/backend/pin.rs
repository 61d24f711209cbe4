//! The pin a rollback leaves on a host (`pin.json`): written atomically and journaled, removed
//! by `unpin` or `apply --unpin`, journaled too.

use crate::backend::script::Script;
use crate::state::Pin;

/// Writes `pin` as the host's `pin.json` (temp file, fsync, rename) and journals `entry`.
pub fn pin_script(root: &str, pin: &Pin, entry: &serde_json::Value) -> String {
    let body = serde_json::to_string_pretty(pin).unwrap_or_default();
    let mut s = Script::new();
    s.raw("set -eu\ncd")
        .arg(root)
        .raw("\nt=pin.json.wv-tmp.$$\n(umask 022; base64 -d > \"$t\")")
        .base64_stdin(body.as_bytes())
        .raw("sync \"$t\"\nmv -f \"$t\" pin.json\nprintf '%s\\n'")
        .arg(entry.to_string())
        .raw(" >> journal.jsonl\necho pinned\n");
    s.into_string()
}

/// Removes the host's pin, if it has one, and journals `entry` when it did.
pub fn unpin_script(root: &str, entry: &serde_json::Value) -> String {
    let mut s = Script::new();
    s.raw("set -eu\ncd")
        .arg(root)
        .raw(" 2>/dev/null || exit 0\n[ -f pin.json ] || { echo 'not pinned'; exit 0; }\nrm -f pin.json\nprintf '%s\\n'")
        .arg(entry.to_string())
        .raw(" >> journal.jsonl\necho unpinned\n");
    s.into_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pin() -> Pin {
        Pin {
            rev: "phase1".into(),
            commit: "0123456789abcdef".into(),
            operator: "ops@laptop".into(),
            pinned_at: "2026-12-01T03:00:00Z".into(),
            reason: Some("it's a drill; $(no)".into()),
        }
    }

    #[test]
    fn pin_and_unpin_scripts_quote_the_root_and_journal() {
        let entry = serde_json::json!({ "step": "pin phase1" });
        insta::assert_snapshot!(format!(
            "{}----\n{}",
            pin_script("/srv/wv root", &pin(), &entry),
            unpin_script("/srv/wv root", &entry)
        ));
    }

    #[test]
    fn a_pin_is_written_read_back_and_removed() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path().to_str().unwrap();
        let entry = serde_json::json!({ "step": "pin" });
        let run = |script: String| {
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(script)
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        assert_eq!(run(pin_script(r, &pin(), &entry)), "pinned\n");
        let back: Pin =
            serde_json::from_slice(&std::fs::read(root.path().join("pin.json")).unwrap()).unwrap();
        assert_eq!(back, pin());
        assert_eq!(run(unpin_script(r, &entry)), "unpinned\n");
        assert_eq!(run(unpin_script(r, &entry)), "not pinned\n");
        let journal = std::fs::read_to_string(root.path().join("journal.jsonl")).unwrap();
        assert_eq!(journal.lines().count(), 2);
    }
}
