//! Secret values: from the operator's environment or a secrets file kept outside the plan
//! repo. Values are only ever written into 0600 env files on hosts; everything shown to a
//! person or a log goes through `mask`.

use std::collections::{BTreeMap, BTreeSet};

use crate::diagnostic::Diagnostic;
use crate::toml_doc::Document;

/// Shown in place of a secret's value.
pub const MASK: &str = "********";

/// Parses a secrets file: a flat TOML table of `NAME = "value"`.
pub fn parse_secrets_file(file: &str, text: &str) -> (BTreeMap<String, String>, Vec<Diagnostic>) {
    let mut doc = Document::parse(file, text);
    let mut out = BTreeMap::new();
    for (key, value) in doc.take_entries() {
        if let Some(v) = doc.value::<String>(value) {
            out.insert(key.into_inner(), v);
        }
    }
    (out, doc.diagnostics)
}

/// Resolves `names`: the environment first, then the secrets file. Unresolved names are absent.
pub fn resolve(
    names: &BTreeSet<String>,
    env: impl Fn(&str) -> Option<String>,
    file: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    names
        .iter()
        .filter_map(|n| {
            env(n)
                .or_else(|| file.get(n).cloned())
                .map(|v| (n.clone(), v))
        })
        .collect()
}

/// Hides secrets in text shown to people: the value of every `KEY=` line (env files) and every
/// `KEY: value` line (YAML, at any indentation) whose key is a secret, and any occurrence of a
/// known secret value.
pub fn mask(text: &str, secret_keys: &[String], values: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        // YAML: `  key: v` or `  - key: v`.
        let body = line.trim_start();
        let body = body.strip_prefix("- ").unwrap_or(body);
        let indent = &line[..line.len() - body.len()];
        let masked = secret_keys.iter().find_map(|k| {
            if line
                .strip_prefix(k.as_str())
                .is_some_and(|rest| rest.starts_with('='))
            {
                return Some(format!("{k}={MASK}"));
            }
            let rest = body.strip_prefix(k.as_str())?;
            rest.starts_with(':')
                .then(|| format!("{indent}{k}: \"{MASK}\""))
        });
        match masked {
            Some(m) => {
                out.push_str(&m);
                if line.ends_with('\n') {
                    out.push('\n');
                }
            }
            None => out.push_str(line),
        }
    }
    for v in values.values().filter(|v| v.len() >= 4) {
        out = out.replace(v.as_str(), MASK);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_hides_yaml_secret_keys_at_any_indentation() {
        let text = "receivers:\n  - telegram_configs:\n      - bot_token: \"old-unknown\"\n        chat_id: 1\n";
        assert_eq!(
            mask(text, &["bot_token".to_string()], &BTreeMap::new()),
            "receivers:\n  - telegram_configs:\n      - bot_token: \"********\"\n        chat_id: 1\n"
        );
    }

    #[test]
    fn mask_hides_secret_lines_and_stray_values() {
        let values = BTreeMap::from([("TOKEN".to_string(), "s3cr3t-value".to_string())]);
        let text = "LOG_LEVEL='info'\nTOKEN='old-unknown'\nECHO=s3cr3t-value\n";
        assert_eq!(
            mask(text, &["TOKEN".to_string()], &values),
            "LOG_LEVEL='info'\nTOKEN=********\nECHO=********\n"
        );
    }
}
