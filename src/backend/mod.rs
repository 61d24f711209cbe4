//! Host-side work as pure functions: build the shell script a step runs on a host, and parse
//! what it printed. Each builder is tested against its exact text.

pub mod alerts;
pub mod apply;
pub mod doctor;
pub mod drill;
pub mod engine;
pub mod nats;
pub mod observe;
pub mod pin;
pub mod pm2;
pub mod postgres;
pub mod script;
pub mod sqlite;
pub mod supervisor;
pub mod supervisord;
pub mod uptime;

pub use script::quote as sh_quote;

/// The command that installs a missing program: its Debian package, or npm's pm2.
pub fn install_command(program: &str) -> Option<String> {
    if program == "pm2" {
        return Some(pm2::install_command());
    }
    package_of(program).map(|p| format!("apt-get install {p}"))
}

/// The Debian package that provides a program a host needs.
pub fn package_of(program: &str) -> Option<&'static str> {
    Some(match program {
        "prometheus" | "promtool" => "prometheus",
        "prometheus-pushgateway" => "prometheus-pushgateway",
        "nats-server" => "nats-server",
        "supervisord" | "supervisorctl" => "supervisor",
        "sqlite3" => "sqlite3",
        "psql" => "postgresql-client",
        "curl" => "curl",
        "sha256sum" | "base64" | "sync" => "coreutils",
        "awk" => "mawk",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn sh_quote_escapes_single_quotes() {
        assert_eq!(super::sh_quote("it's"), r"'it'\''s'");
    }
}
