//! The one builder of every script that runs on a host. Shell text goes in only as literals
//! (`raw` takes `&'static str`); every value goes in through `arg`/`word`/`set`, which quote it
//! as one POSIX shell word; file bodies and lists travel as base64 under a heredoc delimiter
//! that the base64 alphabet cannot form, so no content can end its carrier.

use std::fmt::Write as _;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

/// The heredoc delimiter of base64 bodies: `_` is not in the base64 alphabet, so no line of a
/// body can be this line.
const B64_END: &str = "WV_B64";

/// A shell script under construction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Script {
    text: String,
}

/// `text` as one POSIX shell word: single-quoted, with embedded single quotes closed, escaped
/// and reopened. A NUL cannot be carried by any shell word: the value types refuse it before
/// a value gets here, and it is dropped here should one slip through.
pub fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('\'');
    for c in text.chars() {
        match c {
            '\'' => out.push_str("'\\''"),
            '\0' => {}
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

impl Script {
    pub fn new() -> Self {
        Script::default()
    }

    /// Literal shell text, written by wavectl itself.
    pub fn raw(&mut self, text: &'static str) -> &mut Self {
        self.text.push_str(text);
        self
    }

    /// A space, then `value` as one quoted word.
    pub fn arg(&mut self, value: impl AsRef<str>) -> &mut Self {
        self.text.push(' ');
        self.word(value)
    }

    /// `value` as one quoted word, with nothing before it.
    pub fn word(&mut self, value: impl AsRef<str>) -> &mut Self {
        self.text.push_str(&quote(value.as_ref()));
        self
    }

    /// A number: digits need no quoting.
    pub fn num(&mut self, n: impl Into<u64>) -> &mut Self {
        let _ = write!(self.text, "{}", n.into());
        self
    }

    /// `NAME='value'` and a newline.
    pub fn set(&mut self, name: &'static str, value: impl AsRef<str>) -> &mut Self {
        self.raw(name).raw("=").word(value).raw("\n")
    }

    /// `export KEY='value'` and a newline: the key is a validated shell identifier.
    pub fn export(&mut self, key: &crate::value::EnvKey, value: impl AsRef<str>) -> &mut Self {
        self.text.push_str("export ");
        self.text.push_str(key.as_str());
        self.text.push('=');
        self.word(value).raw("\n")
    }

    /// A heredoc carrying `bytes` in base64 on the standard input of the command before it
    /// (which decodes it with `base64 -d`), ended by a newline.
    pub fn base64_stdin(&mut self, bytes: &[u8]) -> &mut Self {
        let _ = writeln!(self.text, " <<'{B64_END}'");
        let encoded = B64.encode(bytes);
        for chunk in encoded.as_bytes().chunks(76) {
            // base64 output is ASCII.
            self.text.push_str(&String::from_utf8_lossy(chunk));
            self.text.push('\n');
        }
        let _ = writeln!(self.text, "{B64_END}");
        self
    }

    /// Appends another script.
    pub fn append(&mut self, other: &Script) -> &mut Self {
        self.text.push_str(&other.text);
        self
    }

    /// Appends the text of a script another backend builder made (they quote their values).
    pub fn script(&mut self, built: &str) -> &mut Self {
        self.text.push_str(built.trim_end());
        self
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn into_string(self) -> String {
        self.text
    }
}

impl std::fmt::Display for Script {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_is_one_quoted_word() {
        let mut s = Script::new();
        s.raw("printf '%s\\n'")
            .arg("it's")
            .arg("$(touch /tmp/x)")
            .arg("a\nb")
            .raw("\n");
        assert_eq!(
            s.as_str(),
            "printf '%s\\n' 'it'\\''s' '$(touch /tmp/x)' 'a\nb'\n"
        );
    }

    #[test]
    fn a_quoted_word_reaches_the_shell_unchanged() {
        let hostile = "a'b\"c $HOME `id` \\ ;|&<> \n\t*?[]!#~%";
        let mut s = Script::new();
        s.raw("printf '%s'").arg(hostile);
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(s.as_str())
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), hostile);
    }

    #[test]
    fn a_body_travels_as_base64_that_no_content_can_end() {
        let body = "WV_B64\nEOF\n'WV_B64'\n$(id)\n";
        let mut s = Script::new();
        s.raw("base64 -d").base64_stdin(body.as_bytes());
        assert_eq!(
            s.as_str(),
            "base64 -d <<'WV_B64'\nV1ZfQjY0CkVPRgonV1ZfQjY0JwokKGlkKQo=\nWV_B64\n"
        );
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(s.as_str())
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), body);
    }

    #[test]
    fn export_puts_a_validated_key_before_a_quoted_value() {
        let key = crate::value::EnvKey::new("PATH").unwrap();
        let mut s = Script::new();
        s.export(&key, "/opt/x bin:$(id)");
        assert_eq!(s.as_str(), "export PATH='/opt/x bin:$(id)'\n");
    }

    #[test]
    fn set_assigns_a_quoted_value() {
        let mut s = Script::new();
        s.set("R", "/srv/wv root").raw("G=").num(3u64).raw("\n");
        assert_eq!(s.as_str(), "R='/srv/wv root'\nG=3\n");
    }
}
