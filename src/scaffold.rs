//! What `wavectl init` writes, pure: the `--host` values read through the value types, the
//! reference plan adapted to the operator's host names (or a minimal one), the inventory, the
//! READMEs of the empty directories, and the host aliases of an ssh_config file.

use crate::value::{Address, Ident, Root, SshDest};

/// The reference plan, as this wavectl ships it.
pub const PHASE2: &str = include_str!("../plans/phase2.toml");

/// The reference plan's migration files, by their path in the repo (its `[[migration]]` names
/// `migrations/nanoclaw`).
pub const NANOCLAW_MIGRATIONS: &[(&str, &str)] = &[
    (
        "migrations/nanoclaw/0001_queue.up.sql",
        include_str!("../migrations/nanoclaw/0001_queue.up.sql"),
    ),
    (
        "migrations/nanoclaw/0001_queue.down.sql",
        include_str!("../migrations/nanoclaw/0001_queue.down.sql"),
    ),
    (
        "migrations/nanoclaw/0002_rate_limits.up.sql",
        include_str!("../migrations/nanoclaw/0002_rate_limits.up.sql"),
    ),
    (
        "migrations/nanoclaw/0002_rate_limits.down.sql",
        include_str!("../migrations/nanoclaw/0002_rate_limits.down.sql"),
    ),
    (
        "migrations/nanoclaw/0003_sync_status.up.sql",
        include_str!("../migrations/nanoclaw/0003_sync_status.up.sql"),
    ),
    (
        "migrations/nanoclaw/0003_sync_status.down.sql",
        include_str!("../migrations/nanoclaw/0003_sync_status.down.sql"),
    ),
];

/// The repo template the reference plan's `[[file]] standin` renders.
pub const STANDIN_TEMPLATE: (&str, &str) = (
    "templates/standin.sh.tera",
    include_str!("../templates/standin.sh.tera"),
);

/// The reference plan's two host names, in the order `--host` maps onto them.
pub const ROLES: [&str; 2] = ["mainpc", "pc2"];

/// One `--host NAME=SSH_DEST[,address=IP][,root=PATH]`, every part checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewHost {
    pub name: Ident,
    pub ssh: SshDest,
    /// None: to be found (the host part of `user@host`, or what ssh makes of an alias).
    pub address: Option<Address>,
    pub root: Option<Root>,
}

impl NewHost {
    /// Reads `NAME=SSH_DEST[,address=IP][,root=PATH]`; the error names the part and what
    /// was expected.
    pub fn parse(text: &str) -> Result<NewHost, String> {
        let expected =
            "expected NAME=SSH_DEST[,address=IP][,root=PATH], e.g. `mainpc=ops@192.168.1.10`";
        let (name, rest) = text
            .split_once('=')
            .ok_or_else(|| format!("--host `{}`: no `=`, {expected}", crate::value::shown(text)))?;
        let name =
            Ident::new(name).map_err(|e| format!("--host `{}`: {e}", crate::value::shown(text)))?;
        let mut parts = rest.split(',');
        let dest = parts.next().unwrap_or_default();
        let ssh = SshDest::new(dest).map_err(|e| format!("--host {name}: {e}"))?;
        let mut host = NewHost {
            name,
            ssh,
            address: None,
            root: None,
        };
        for part in parts {
            let name = &host.name;
            match part.split_once('=') {
                Some(("address", a)) => {
                    host.address =
                        Some(Address::new(a).map_err(|e| format!("--host {name}: {e}"))?);
                }
                Some(("root", r)) => {
                    host.root = Some(Root::new(r).map_err(|e| format!("--host {name}: {e}"))?);
                }
                _ => {
                    return Err(format!(
                        "--host {name}: unknown part `{}`, expected `address=IP` or `root=PATH`",
                        crate::value::shown(part)
                    ));
                }
            }
        }
        if host.address.is_none() {
            host.address = host.address_of_destination();
        }
        Ok(host)
    }

    /// The host part of a `user@host[:port]` destination, as the address its services
    /// listen on; an alias (no `@`) is left to ssh's own config.
    fn address_of_destination(&self) -> Option<Address> {
        let (dest, _) = self.ssh.split();
        let (_, host) = dest.split_once('@')?;
        Address::new(host).ok()
    }
}

/// The adapted reference plan: the first host takes `mainpc`'s role, the second `pc2`'s.
/// Host references become the names; names, domains, streams and subjects derived from the
/// old host names follow them.
pub fn phase2_plan(first: &Ident, second: &Ident) -> String {
    let mut text = PHASE2.to_string();
    // Through placeholders, so a name that is the other role's (`--host pc2=.. --host
    // mainpc=..`) is not renamed twice.
    let mark = |kind: &str, i: usize| format!("\u{1}{kind}{i}\u{1}");
    for (i, role) in ROLES.iter().enumerate() {
        // Exact references first (a name may hold `.`), then the derived words.
        text = text.replace(
            &format!("host = \"{role}\""),
            &format!("host = \"{}\"", mark("H", i)),
        );
        text = replace_word(&text, role, &mark("T", i));
        text = replace_word(&text, &role.to_uppercase(), &mark("U", i));
    }
    for (i, name) in [first, second].into_iter().enumerate() {
        let token = name.replace('.', "-");
        let upper = token.to_uppercase().replace('-', "_");
        text = text
            .replace(&mark("H", i), name)
            .replace(&mark("T", i), &token)
            .replace(&mark("U", i), &upper);
    }
    text
}

/// `from` replaced where it is not part of a longer word of letters and digits.
fn replace_word(text: &str, from: &str, to: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(from) {
        let before = rest[..i].chars().next_back();
        let after = rest[i + from.len()..].chars().next();
        let alone = !before.is_some_and(|c| c.is_ascii_alphanumeric())
            && !after.is_some_and(|c| c.is_ascii_alphanumeric());
        out.push_str(&rest[..i]);
        out.push_str(if alone { to } else { from });
        rest = &rest[i + from.len()..];
    }
    out.push_str(rest);
    out
}

/// One hub and one Pushgateway on `host`, each wave gated on readiness.
pub fn minimal_plan(host: &Ident) -> String {
    format!(
        r#"# A minimal plan written by `wavectl init --minimal`: a Pushgateway and a Prometheus hub
# that scrapes it, both on {host}. Add NATS, agents, processes and migrations as the
# reference plan (/usr/share/doc/wavectl/examples/plans/phase2.toml) shows.
version = 1
name = "minimal"

[[pushgateway]]
name = "pushgateway"
host = "{host}"
port = 9091

[[hub]]
name = "hub"
host = "{host}"
port = 9090
scrape_interval = "15s"
retention = "15d"

[[wave]]
name = "pushgateway"
select = ["pushgateway.*"]
[[wave.gate]]
http = {{ host = "{host}", url = "http://{{{{ host.address }}}}:9091/-/ready" }}
timeout = "30s"

[[wave]]
name = "hub"
select = ["hub.*"]
[[wave.gate]]
http = {{ host = "{host}", url = "http://{{{{ host.address }}}}:9090/-/ready" }}
timeout = "60s"
"#
    )
}

/// The inventory of `hosts` (addresses resolved); `ssh_config` when the operator named one.
pub fn inventory(hosts: &[(NewHost, Address)], ssh_config: Option<&str>) -> String {
    let q = |s: &str| toml::Value::String(s.to_string()).to_string();
    let mut out = String::from(
        "# Where the machines are: written by `wavectl init`. `ssh` is an alias of your ssh config\n# or user@host:port; `address` is where the services listen; `root` holds everything\n# wavectl writes on the host (default ~/.wavectl).\n",
    );
    if let Some(cfg) = ssh_config {
        out.push_str(&format!("ssh_config = {}\n", q(cfg)));
    }
    out.push_str("connect_timeout = \"10s\"\ncommand_timeout = \"300s\"\n");
    for (h, address) in hosts {
        out.push_str(&format!(
            "\n[[host]]\nname = {}\nssh = {}\naddress = {}\n",
            q(&h.name),
            q(&h.ssh),
            q(address)
        ));
        if let Some(root) = &h.root {
            out.push_str(&format!("root = {}\n", q(root)));
        }
    }
    out
}

pub const TEMPLATES_README: &str = "Templates (`NAME.tera`, Tera syntax) that override wavectl's built-in ones of the same name (prometheus.yml.tera, nats.conf.tera, agent.env.tera, ...), and those a plan's `[[file]] template = \"NAME.tera\"` renders.\n";

pub const MIGRATIONS_README: &str = "One directory per database named by a plan's `[[migration]] dir`, holding `NNNN_name.up.sql` and `NNNN_name.down.sql` pairs numbered from 0001 without gaps.\n";

/// The host aliases an ssh_config file names (`Host` lines without patterns), in order.
pub fn ssh_config_hosts(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        let mut words = line.split(|c: char| c.is_whitespace() || c == '=');
        if !words.next().is_some_and(|k| k.eq_ignore_ascii_case("host")) {
            continue;
        }
        for w in words.filter(|w| !w.is_empty()) {
            if !w.contains(['*', '?', '!'])
                && SshDest::new(w).is_ok()
                && !out.iter().any(|o| o == w)
            {
                out.push(w.to_string());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_spec_goes_through_the_value_types() {
        let h = NewHost::parse("web1=ops@10.0.0.5:2222,root=/srv/wv").unwrap();
        assert_eq!(
            (
                h.name.as_str(),
                h.ssh.as_str(),
                h.address.as_ref().map(|a| a.as_str()),
                h.root.as_ref().map(|r| r.as_str())
            ),
            (
                "web1",
                "ops@10.0.0.5:2222",
                Some("10.0.0.5"),
                Some("/srv/wv")
            )
        );
        let alias = NewHost::parse("db=db-alias,address=192.168.1.9").unwrap();
        assert_eq!(
            alias.address.as_ref().map(|a| a.as_str()),
            Some("192.168.1.9")
        );
        assert_eq!(NewHost::parse("db=db-alias").unwrap().address, None);
        for (bad, says) in [
            ("web1", "no `=`"),
            ("a b=x", "invalid name `a b`"),
            ("w=-oProxyCommand=x", "invalid ssh destination"),
            ("w=h,address=1.2.3.4;id", "invalid address"),
            ("w=h,root=/srv/a b", "invalid root"),
            ("w=h,port=22", "unknown part `port=22`"),
        ] {
            let e = NewHost::parse(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn the_reference_plan_takes_the_operators_host_names() {
        let a = Ident::new("alpha").unwrap();
        let b = Ident::new("beta.lan").unwrap();
        let plan = phase2_plan(&a, &b);
        assert!(!plan.contains("mainpc") && !plan.contains("pc2"), "{plan}");
        assert!(!plan.contains("MAINPC") && !plan.contains("PC2"));
        assert!(plan.contains("host = \"beta.lan\""));
        assert!(plan.contains("name = \"nats-beta-lan\""));
        assert!(plan.contains("domain = \"beta-lan\""));
        assert!(plan.contains("METRICS_ALL_BETA_LAN"));
        assert!(plan.contains("observability.metrics.alpha"));
        // The same names give back the reference plan.
        let same = phase2_plan(&Ident::new("mainpc").unwrap(), &Ident::new("pc2").unwrap());
        assert_eq!(same, PHASE2);
        let swapped = phase2_plan(&Ident::new("pc2").unwrap(), &Ident::new("mainpc").unwrap());
        assert!(swapped.contains("name = \"central\"            # CentralHub: long-term store, receives the edge's remote_write\nhost = \"pc2\""), "{swapped}");
    }

    #[test]
    fn the_inventory_lists_every_host_with_its_address() {
        let h = NewHost::parse("web1=ops@10.0.0.5:2222").unwrap();
        let a = h.address.clone().unwrap();
        let text = inventory(&[(h, a)], Some("/etc/wv/ssh_config"));
        assert!(text.contains("ssh_config = \"/etc/wv/ssh_config\"\n"));
        assert!(
            text.ends_with(
                "[[host]]\nname = \"web1\"\nssh = \"ops@10.0.0.5:2222\"\naddress = \"10.0.0.5\"\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn ssh_config_hosts_are_the_plain_aliases() {
        let text = "Host *\n  User x\nHost mainpc pc2\n  HostName 10.0.0.2\nhost=backup\nHost *.lan !x\nMatch host y\n";
        assert_eq!(ssh_config_hosts(text), vec!["mainpc", "pc2", "backup"]);
    }
}
