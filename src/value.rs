//! Validated values: every plan- and inventory-controlled string that reaches a host has one of
//! these types, checked when it is deserialized, with one rule and one message each, so the
//! error points at the value's own position. Pure.

use std::borrow::Borrow;
use std::fmt;
use std::ops::Deref;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize};

/// The value as shown in an error: escaped, and cut short when long.
pub fn shown(text: &str) -> String {
    const MAX: usize = 60;
    // Control characters as TOML writes them, so the value can be found in the source.
    let escaped: String = text
        .chars()
        .map(|c| match c {
            '\n' => "\\n".to_string(),
            '\t' => "\\t".to_string(),
            '\r' => "\\r".to_string(),
            c if c.is_control() => format!("\\u{:04X}", c as u32),
            c => c.to_string(),
        })
        .collect();
    if escaped.chars().count() > MAX {
        let cut: String = escaped.chars().take(MAX).collect();
        format!("{cut}…")
    } else {
        escaped
    }
}

macro_rules! value_type {
    ($(#[$meta:meta])* $name:ident, $rule:expr) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Default)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Checks `text` against the type's rule; the error says what was expected.
            pub fn new(text: impl Into<String>) -> Result<Self, String> {
                let text = text.into();
                let rule: fn(&str) -> Result<(), String> = $rule;
                rule(&text)?;
                Ok($name(text))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = String::deserialize(d)?;
                $name::new(text).map_err(D::Error::custom)
            }
        }

        impl Deref for $name {
            type Target = String;
            fn deref(&self) -> &String {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl PartialEq<String> for $name {
            fn eq(&self, other: &String) -> bool {
                &self.0 == other
            }
        }

        impl PartialEq<$name> for String {
            fn eq(&self, other: &$name) -> bool {
                *self == other.0
            }
        }

        impl PartialEq<$name> for str {
            fn eq(&self, other: &$name) -> bool {
                self == other.0
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }
    };
}

fn no_control(text: &str, what: &str) -> Result<(), String> {
    if text.contains('\0') {
        return Err(format!("{what} `{}` contains a NUL byte", shown(text)));
    }
    Ok(())
}

fn one_line(text: &str, what: &str) -> Result<(), String> {
    no_control(text, what)?;
    if text.chars().any(|c| c.is_control() && c != '\t') {
        return Err(format!(
            "{what} `{}` contains a newline or another control character, expected one line",
            shown(text)
        ));
    }
    Ok(())
}

fn ident(text: &str) -> Result<(), String> {
    let ok = text.len() <= 64
        && text
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid name `{}`, expected 1 to 64 letters, digits, `-`, `_` or `.`, starting with a letter or digit",
            shown(text)
        ))
    }
}

/// `[A-Za-z_][A-Za-z0-9_]*`, at most `max` bytes: a shell variable or a PostgreSQL name.
fn is_identifier(text: &str, max: usize) -> bool {
    text.len() <= max
        && text
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && text.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn pg_name(text: &str) -> Result<(), String> {
    if is_identifier(text, 63) {
        Ok(())
    } else {
        Err(format!(
            "invalid PostgreSQL name `{}`, expected 1 to 63 letters, digits and `_`, not starting with a digit ([A-Za-z_][A-Za-z0-9_]*)",
            shown(text)
        ))
    }
}

fn host_selector(text: &str) -> Result<(), String> {
    let name = text.strip_prefix("group:").unwrap_or(text);
    if text == "*" || ident(name).is_ok() {
        Ok(())
    } else {
        Err(format!(
            "invalid host selector `{}`, expected a host name, `*` (every host of the inventory) or `group:NAME` (the hosts of an inventory group)",
            shown(text)
        ))
    }
}

fn env_key(text: &str) -> Result<(), String> {
    if is_identifier(text, 128) {
        Ok(())
    } else {
        Err(format!(
            "invalid variable name `{}`, expected letters, digits and `_`, not starting with a digit ([A-Za-z_][A-Za-z0-9_]*)",
            shown(text)
        ))
    }
}

/// One path component: no `.`/`..`, only characters that need no quoting in any of the formats
/// wavectl writes (shell, INI, YAML, NATS conf).
fn component_ok(c: &str) -> bool {
    !c.is_empty()
        && c != "."
        && c != ".."
        && c.chars()
            .all(|ch| ch.is_ascii_alphanumeric() || "-_.+@".contains(ch))
}

fn relative_path(text: &str) -> Result<(), String> {
    if text.len() <= 255 && !text.starts_with('/') && text.split('/').all(component_ok) {
        Ok(())
    } else {
        Err(format!(
            "invalid path `{}`, expected a relative path of letters, digits, `-`, `_`, `.`, `+` or `@` without `..`, empty or absolute parts",
            shown(text)
        ))
    }
}

fn absolute_path(text: &str) -> Result<(), String> {
    match text.strip_prefix('/') {
        Some("") => Ok(()),
        Some(rest) if text.len() <= 255 && rest.split('/').all(component_ok) => Ok(()),
        _ => Err(format!(
            "invalid path `{}`, expected an absolute path of letters, digits, `-`, `_`, `.`, `+` or `@` without `..` or empty parts",
            shown(text)
        )),
    }
}

fn host_path(text: &str) -> Result<(), String> {
    if text.starts_with('/') {
        absolute_path(text)
    } else {
        relative_path(text)
    }
}

fn root(text: &str) -> Result<(), String> {
    let ok = match text.strip_prefix('~') {
        Some("") => true,
        Some(rest) => rest
            .strip_prefix('/')
            .is_some_and(|r| r.split('/').all(component_ok)),
        None => text.len() > 1 && absolute_path(text).is_ok(),
    };
    if ok && text.len() <= 200 {
        Ok(())
    } else {
        Err(format!(
            "invalid root `{}`, expected an absolute path or one under `~/` (letters, digits, `-`, `_`, `.`, `+`, `@`; no spaces, `..` or empty parts; not `/`)",
            shown(text)
        ))
    }
}

fn address(text: &str) -> Result<(), String> {
    if text.parse::<std::net::IpAddr>().is_ok() || dns_name(text) {
        Ok(())
    } else {
        Err(format!(
            "invalid address `{}`, expected an IP address or a DNS name",
            shown(text)
        ))
    }
}

fn dns_name(text: &str) -> bool {
    text.len() <= 253
        && text.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

fn ssh_destination(text: &str) -> Result<(), String> {
    match parse_ssh(text) {
        Some(_) => Ok(()),
        None => Err(format!(
            "invalid ssh destination `{}`, expected an ssh_config alias, `host`, `user@host` or `user@host:port`",
            shown(text)
        )),
    }
}

/// `[user@]host[:port]` -> (user@host, port). Hosts are DNS names, IPv4 addresses or
/// ssh_config aliases; IPv6 addresses go in brackets (`user@[::1]:22`).
fn parse_ssh(text: &str) -> Option<(String, Option<u16>)> {
    let (user, rest) = match text.split_once('@') {
        Some((u, r)) => (Some(u), r),
        None => (None, text),
    };
    if let Some(u) = user {
        let ok = !u.is_empty()
            && !u.starts_with('-')
            && u.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if !ok {
            return None;
        }
    }
    let (host, port) = if let Some(r) = rest.strip_prefix('[') {
        let (h, after) = r.split_once(']')?;
        h.parse::<std::net::Ipv6Addr>().ok()?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':')?.parse::<u16>().ok()?),
        };
        (h.to_string(), port)
    } else {
        match rest.split_once(':') {
            Some((h, p)) => (h.to_string(), Some(p.parse::<u16>().ok()?)),
            None => (rest.to_string(), None),
        }
    };
    let host_ok = !host.starts_with('-')
        && (host.parse::<std::net::IpAddr>().is_ok()
            || (!host.is_empty()
                && host.len() <= 253
                && host
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))));
    if !host_ok || port == Some(0) {
        return None;
    }
    let dest = match user {
        Some(u) => format!("{u}@{host}"),
        None => host,
    };
    Some((dest, port))
}

fn arg(text: &str) -> Result<(), String> {
    one_line(text, "argument")
}

fn text(text: &str) -> Result<(), String> {
    no_control(text, "value")
}

fn line(text: &str) -> Result<(), String> {
    one_line(text, "value")
}

fn template_name(text: &str) -> Result<(), String> {
    if text.len() <= 128 && !text.contains('/') && component_ok(text) {
        Ok(())
    } else {
        Err(format!(
            "invalid template name `{}`, expected a file name in the plan repo's templates/ (letters, digits, `-`, `_`, `.`)",
            shown(text)
        ))
    }
}

fn subject(text: &str) -> Result<(), String> {
    let ok = !text.is_empty()
        && text.len() <= 255
        && text.split('.').all(|t| {
            !t.is_empty()
                && t.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_$*>".contains(c))
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid subject `{}`, expected dot-separated tokens of letters, digits, `-`, `_`, `$`, `*` or `>`",
            shown(text)
        ))
    }
}

value_type!(
    /// A PostgreSQL role or database name: `[A-Za-z_][A-Za-z0-9_]*`, at most 63 (the server's
    /// identifier limit), so it needs no quoting in SQL, a passfile or the environment.
    PgName,
    pg_name
);
value_type!(
    /// A resource, host, wave or agent name: it becomes file names, program names and words.
    Ident,
    ident
);
value_type!(
    /// One entry of a resource's `hosts`: a host name, `*` or `group:NAME`.
    HostSelector,
    host_selector
);
value_type!(
    /// An environment variable or secret name (`[A-Za-z_][A-Za-z0-9_]*`).
    EnvKey,
    env_key
);
value_type!(
    /// A relative path that stays under the directory it is joined to.
    RelPath,
    relative_path
);
value_type!(
    /// A path on a host: absolute, or relative to the host root (and confined under it).
    HostPath,
    host_path
);
value_type!(
    /// A host root: absolute or under `~/`, in characters every format carries unquoted.
    Root,
    root
);
value_type!(
    /// Where a host's services listen: an IP address or a DNS name.
    Address,
    address
);
value_type!(
    /// An ssh destination: alias, `user@host` or `user@host:port`.
    SshDest,
    ssh_destination
);
value_type!(
    /// A command argument: one line, no NUL.
    Arg,
    arg
);
value_type!(
    /// Free text (an env value, a query, content shown in a file): anything but NUL.
    Text,
    text
);
value_type!(
    /// One line of text: no newline, no control character.
    Line,
    line
);
value_type!(
    /// A template file name in the plan repo's `templates/`.
    TemplateName,
    template_name
);
value_type!(
    /// A NATS subject (wildcards allowed).
    Subject,
    subject
);

/// What a [`HostSelector`] picks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostPick<'a> {
    Every,
    Group(&'a str),
    Host(&'a str),
}

impl HostSelector {
    pub fn pick(&self) -> HostPick<'_> {
        match self.0.as_str() {
            "*" => HostPick::Every,
            s => match s.strip_prefix("group:") {
                Some(g) => HostPick::Group(g),
                None => HostPick::Host(s),
            },
        }
    }
}

impl SshDest {
    /// The destination handed to ssh (`user@host`) and the port, when one was given.
    pub fn split(&self) -> (String, Option<u16>) {
        parse_ssh(&self.0).unwrap_or_else(|| (self.0.clone(), None))
    }
}

impl Root {
    /// The root with `~` replaced by `home`.
    pub fn resolved(&self, home: &str) -> String {
        match self.0.strip_prefix('~') {
            Some(rest) => format!("{home}{rest}"),
            None => self.0.clone(),
        }
    }
}

/// Checks a path on a host after templates were rendered into it (e.g. a `cwd` of
/// `{{ root }}/app`): absolute, normalised, no `..`.
pub fn check_rendered_absolute(text: &str) -> Result<(), String> {
    absolute_path(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_refuse_everything_that_is_not_a_plain_word() {
        for bad in [
            "",
            "../../../../tmp/x",
            "a/b",
            "'$(id)'",
            "a b",
            "a\nb",
            "-rf",
            ".hidden",
            "a;b",
        ] {
            assert!(Ident::new(bad).is_err(), "{bad:?} must be refused");
        }
        assert!(Ident::new("ObservabilityHub").is_ok());
        assert!(Ident::new("nats-pc2.v1_a").is_ok());
    }

    #[test]
    fn env_keys_are_shell_identifiers() {
        for bad in ["A; rm -rf /", "1A", "A-B", "A=B", "", "A\n"] {
            assert!(EnvKey::new(bad).is_err(), "{bad:?}");
        }
        assert!(EnvKey::new("_TELEGRAM_TOKEN2").is_ok());
    }

    #[test]
    fn relative_paths_stay_under_their_directory() {
        for bad in [
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a//b",
            "a/./b",
            "a\nb",
            "a b",
            "a/",
            "",
        ] {
            assert!(RelPath::new(bad).is_err(), "{bad:?}");
        }
        assert!(RelPath::new("app/config.yml").is_ok());
        assert!(HostPath::new("/etc/app.env").is_ok());
        assert!(HostPath::new("/etc/../x").is_err());
    }

    #[test]
    fn roots_are_absolute_or_under_home_without_spaces() {
        for bad in [
            "",
            "relative",
            "/srv/wv root",
            "/",
            "~user/x",
            "/a/../b",
            "/a'b",
        ] {
            assert!(Root::new(bad).is_err(), "{bad:?}");
        }
        for good in ["~", "~/.wavectl", "/srv/wv/mainpc", "/tmp/.tmpAb12"] {
            assert!(Root::new(good).is_ok(), "{good:?}");
        }
        assert_eq!(
            Root::new("~/.wavectl").unwrap().resolved("/home/u"),
            "/home/u/.wavectl"
        );
    }

    #[test]
    fn ssh_destinations_parse_user_host_and_port() {
        let d = SshDest::new("ops@10.0.0.5:2222").unwrap();
        assert_eq!(d.split(), ("ops@10.0.0.5".to_string(), Some(2222)));
        assert_eq!(
            SshDest::new("mainpc").unwrap().split(),
            ("mainpc".to_string(), None)
        );
        assert_eq!(
            SshDest::new("u@[::1]:22").unwrap().split(),
            ("u@::1".to_string(), Some(22))
        );
        for bad in [
            "",
            "-oProxyCommand=x",
            "a b",
            "u@h:0",
            "u@h:x",
            "u@",
            "@h",
            "h'",
        ] {
            assert!(SshDest::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn addresses_are_ips_or_dns_names() {
        assert!(Address::new("127.0.0.2").is_ok());
        assert!(Address::new("pc2.lan").is_ok());
        for bad in ["", "1.2.3.4'; id", "a b", "-x", "a..b"] {
            assert!(Address::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn arguments_are_one_line_without_nul() {
        assert!(Arg::new("a\0b").is_err());
        assert!(Arg::new("a\nb").is_err());
        assert!(Arg::new("100% 'quoted' $(x)").is_ok());
        assert!(Text::new("a\nb").is_ok());
        assert!(Text::new("a\0b").is_err());
    }

    #[test]
    fn a_long_value_is_shown_cut_short() {
        let long = "x".repeat(10_000);
        let err = Ident::new(long).unwrap_err();
        assert!(err.len() < 300, "{err}");
    }
}
