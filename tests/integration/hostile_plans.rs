//! Hostile plans and inventories: every case is either refused by `validate` (exit 1, at the
//! offending value's `file:line:col`) or applied for real, through the `local` and the `ssh`
//! transport, with the written bytes exactly the planned ones, no marker file outside the root
//! and no command run that the plan did not name.

use std::path::{Path, PathBuf};

use crate::common::{Repo, StopSupervisord};
use crate::lab::Lab;

const HEADER: &str = "version = 1\nname = \"t\"\n";

/// A marker that a command injected anywhere would create: outside every root.
fn marker() -> PathBuf {
    PathBuf::from(format!("/tmp/wv-hostile-marker-{}", std::process::id()))
}

/// The 1-based line and column of the first `needle` in `text`.
fn position(text: &str, needle: &str) -> (usize, usize) {
    let at = text
        .find(needle)
        .unwrap_or_else(|| panic!("{needle:?} not in {text}"));
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let col = before[before.rfind('\n').map_or(0, |i| i + 1)..]
        .chars()
        .count()
        + 1;
    (line, col)
}

/// One refused case: the plan (after HEADER) or the inventory, and the text whose position the
/// error must name.
struct Refused {
    what: &'static str,
    plan: String,
    inventory: Option<String>,
    needle: &'static str,
}

fn plan_case(what: &'static str, tail: &str, needle: &'static str) -> Refused {
    Refused {
        what,
        plan: format!("{HEADER}{tail}"),
        inventory: None,
        needle,
    }
}

fn inventory_case(what: &'static str, host_lines: &str, needle: &'static str) -> Refused {
    Refused {
        what,
        plan: format!("{HEADER}\n[[pushgateway]]\nname = \"gw\"\nhost = \"mainpc\"\n"),
        inventory: Some(format!("[[host]]\nname = \"mainpc\"\n{host_lines}")),
        needle,
    }
}

/// A process whose `field = value` line is `line`.
fn process_with(line: &str) -> String {
    format!(
        "\n[[process]]\nname = \"p\"\nhost = \"mainpc\"\ncommand = [\"sleep\", \"1\"]\n{line}\n"
    )
}

/// A postgres migration set whose `postgres = { ... }` holds `fields`.
fn pg_set(fields: &str) -> String {
    format!(
        "\n[[migration]]\nname = \"db\"\nhost = \"mainpc\"\nengine = \"postgres\"\ndir = \"migrations/app\"\npostgres = {{ {fields} }}\n"
    )
}

fn refused_cases() -> Vec<Refused> {
    let m = "touch /tmp/wv-hostile-marker";
    vec![
        plan_case(
            "file path that ends the observe heredoc",
            &format!(
                "\n[[file]]\nname = \"f\"\nhost = \"mainpc\"\npath = \"a\\nWV_WANT\\n{m}\"\ncontent = \"x\"\n"
            ),
            "\"a\\nWV_WANT",
        ),
        plan_case(
            "absolute file path",
            "\n[[file]]\nname = \"f\"\nhost = \"mainpc\"\npath = \"/etc/passwd\"\ncontent = \"x\"\n",
            "\"/etc/passwd\"",
        ),
        plan_case(
            "file path escaping with ..",
            "\n[[file]]\nname = \"f\"\nhost = \"mainpc\"\npath = \"a/../../../x\"\ncontent = \"x\"\n",
            "\"a/../../../x\"",
        ),
        plan_case(
            "file path with a space",
            "\n[[file]]\nname = \"f\"\nhost = \"mainpc\"\npath = \"a b\"\ncontent = \"x\"\n",
            "\"a b\"",
        ),
        plan_case(
            "agent name escaping the root",
            "\n[[hub]]\nname = \"h\"\nhost = \"mainpc\"\nport = 9100\n\n[[batch]]\nname = \"b\"\nhost = \"mainpc\"\nagents = [\"ok\", \"../../../../tmp/x\"]\nprimary_hub = \"h\"\n",
            "\"../../../../tmp/x\"",
        ),
        plan_case(
            "agent name with a command substitution",
            "\n[[hub]]\nname = \"h\"\nhost = \"mainpc\"\nport = 9100\n\n[[batch]]\nname = \"b\"\nhost = \"mainpc\"\nagents = [\"'$(touch /tmp/wv-hostile-marker)'\"]\nprimary_hub = \"h\"\n",
            "\"'$(touch",
        ),
        plan_case(
            "process name with a space",
            "\n[[process]]\nname = \"my app\"\nhost = \"mainpc\"\ncommand = [\"sleep\", \"1\"]\n",
            "\"my app\"",
        ),
        plan_case(
            "process name with a newline and an INI section",
            "\n[[process]]\nname = \"a\\n[program:evil]\"\nhost = \"mainpc\"\ncommand = [\"sleep\", \"1\"]\n",
            "\"a\\n[program:evil]\"",
        ),
        plan_case(
            "hub name with a quote",
            "\n[[hub]]\nname = \"a\\\"b\"\nhost = \"mainpc\"\nport = 9100\n",
            "\"a\\\"b\"",
        ),
        plan_case(
            "resource name longer than 64",
            &format!(
                "\n[[pushgateway]]\nname = \"{}\"\nhost = \"mainpc\"\n",
                "a".repeat(65)
            ),
            "\"aaaa",
        ),
        plan_case(
            "host reference that is a path",
            "\n[[pushgateway]]\nname = \"gw\"\nhost = \"../mainpc\"\n",
            "\"../mainpc\"",
        ),
        plan_case(
            "env key with a command",
            &process_with(&format!("env = {{ \"A; {m}\" = \"x\" }}")),
            "\"A; touch",
        ),
        plan_case(
            "env key starting with a digit",
            &process_with("env = { \"1A\" = \"x\" }"),
            "\"1A\"",
        ),
        plan_case(
            "env key with =",
            &process_with("env = { \"A=B\" = \"x\" }"),
            "\"A=B\"",
        ),
        plan_case(
            "env value with a NUL",
            &process_with("env = { A = \"x\\u0000y\" }"),
            "\"x\\u0000y\"",
        ),
        plan_case(
            "secret name with a command",
            &process_with("secrets = [\"X; touch /tmp/wv-hostile-marker\"]"),
            "\"X; touch",
        ),
        plan_case(
            "secret name with a newline",
            &process_with("secrets = [\"X\\nY\"]"),
            "\"X\\nY\"",
        ),
        plan_case(
            "command argument with a newline",
            "\n[[process]]\nname = \"p\"\nhost = \"mainpc\"\ncommand = [\"sleep\", \"1\\n[program:evil]\\ncommand=touch /tmp/wv-hostile-marker\"]\n",
            "\"1\\n[program:evil]",
        ),
        plan_case(
            "command argument with a NUL",
            "\n[[process]]\nname = \"p\"\nhost = \"mainpc\"\ncommand = [\"sleep\", \"1\\u0000\"]\n",
            "\"1\\u0000\"",
        ),
        plan_case(
            "cwd with a newline",
            &process_with("cwd = \"/tmp\\n[program:evil]\""),
            "\"/tmp\\n[program:evil]\"",
        ),
        plan_case("relative cwd", &process_with("cwd = \"app\""), "\"app\""),
        plan_case(
            "cwd escaping with ..",
            &process_with("cwd = \"{{ root }}/../../etc\""),
            "\"{{ root }}/../../etc\"",
        ),
        plan_case(
            "env file outside the root by ..",
            &process_with("env_files = [\"../../etc/shadow\"]"),
            "\"../../etc/shadow\"",
        ),
        plan_case(
            "var that renders a newline into an argument",
            "\n[vars]\nX = \"1\\n[program:evil]\"\n\n[[process]]\nname = \"p\"\nhost = \"mainpc\"\ncommand = [\"sleep\", \"{{ host.vars.X }}\"]\n",
            "[\"sleep\"",
        ),
        plan_case(
            "var name with a command",
            "\n[vars]\n\"a; id\" = \"1\"\n",
            "\"a; id\"",
        ),
        plan_case(
            "wave name with a newline",
            "\n[[pushgateway]]\nname = \"gw\"\nhost = \"mainpc\"\n\n[[wave]]\nname = \"w\\n[program:evil]\"\nselect = [\"pushgateway.*\"]\n",
            "\"w\\n[program:evil]\"",
        ),
        plan_case(
            "wave name with a command substitution",
            "\n[[pushgateway]]\nname = \"gw\"\nhost = \"mainpc\"\n\n[[wave]]\nname = \"$(touch /tmp/wv-hostile-marker)\"\nselect = [\"pushgateway.*\"]\n",
            "\"$(touch",
        ),
        plan_case(
            "migration database escaping the root",
            "\n[[migration]]\nname = \"db\"\nhost = \"mainpc\"\ndatabase = \"../../../tmp/x.db\"\ndir = \"migrations/app\"\n",
            "\"../../../tmp/x.db\"",
        ),
        plan_case(
            "absolute migration database",
            "\n[[migration]]\nname = \"db\"\nhost = \"mainpc\"\ndatabase = \"/tmp/x.db\"\ndir = \"migrations/app\"\n",
            "\"/tmp/x.db\"",
        ),
        plan_case(
            "migration dir outside the plan repo",
            "\n[[migration]]\nname = \"db\"\nhost = \"mainpc\"\ndatabase = \"x.db\"\ndir = \"../../etc\"\n",
            "\"../../etc\"",
        ),
        plan_case(
            "template outside the plan repo's templates/",
            "\n[[file]]\nname = \"f\"\nhost = \"mainpc\"\npath = \"x\"\ntemplate = \"../../etc/passwd\"\n",
            "\"../../etc/passwd\"",
        ),
        plan_case(
            "stream subject with a space",
            "\n[[nats]]\nname = \"n\"\nhost = \"mainpc\"\nport = 4222\nmonitor_port = 8222\n\n[[stream]]\nname = \"S\"\nserver = \"n\"\nsubjects = [\"a b\"]\n",
            "\"a b\"",
        ),
        plan_case(
            "health command argument with a newline",
            &process_with(
                "health = { command = { host = \"mainpc\", run = [\"true\", \"\\n\"] } }",
            ),
            "\"\\n\"]",
        ),
        plan_case(
            "http probe url with a newline",
            &process_with(
                "health = { http = { host = \"mainpc\", url = \"http://x/\\n-o/tmp/wv-hostile-marker\" } }",
            ),
            "\"http://x/\\n",
        ),
        plan_case(
            "two files with the same path",
            "\n[[file]]\nname = \"f1\"\nhost = \"mainpc\"\npath = \"same.txt\"\ncontent = \"a\"\n\n[[file]]\nname = \"f2\"\nhost = \"mainpc\"\npath = \"same.txt\"\ncontent = \"b\"\n",
            "\"same.txt\"",
        ),
        plan_case(
            "a file over a rendered config",
            "\n[[process]]\nname = \"p\"\nhost = \"mainpc\"\ncommand = [\"sleep\", \"1\"]\n\n[[file]]\nname = \"f\"\nhost = \"mainpc\"\npath = \"supervisor/programs/p.conf\"\ncontent = \"[program:evil]\\ncommand=touch /tmp/wv-hostile-marker\\n\"\n",
            "\"supervisor/programs/p.conf\"",
        ),
        plan_case("plan name with a newline", "", "\"t\"")
            .with_plan("version = 1\nname = \"t\\n$(id)\"\n", "\"t\\n$(id)\""),
        plan_case(
            "alert rule name with a newline",
            "\n[[hub]]\nname = \"h\"\nhost = \"mainpc\"\nport = 9100\n[[hub.alert_rules]]\nname = \"a\\nb\"\nexpr = \"up == 0\"\n",
            "\"a\\nb\"",
        ),
        inventory_case(
            "address with a quote",
            "ssh = \"mainpc\"\naddress = \"127.0.0.2'; touch /tmp/wv-hostile-marker; '\"\nroot = \"/srv/x\"\n",
            "\"127.0.0.2'",
        ),
        inventory_case(
            "supervisor that is a command",
            "ssh = \"mainpc\"\naddress = \"127.0.0.2\"\nsupervisor = \"pm2; touch /tmp/wv-hostile-marker\"\n",
            "\"pm2; touch",
        ),
        inventory_case(
            "supervisor not built",
            "ssh = \"mainpc\"\naddress = \"127.0.0.2\"\nsupervisor = \"systemd\"\n",
            "\"systemd\"",
        ),
        inventory_case(
            "empty ssh destination",
            "ssh = \"\"\naddress = \"127.0.0.2\"\nroot = \"/srv/x\"\n",
            "\"\"",
        ),
        inventory_case(
            "ssh destination that is an option",
            "ssh = \"-oProxyCommand=touch /tmp/wv-hostile-marker\"\naddress = \"127.0.0.2\"\n",
            "\"-oProxyCommand",
        ),
        inventory_case(
            "ssh destination with a bad port",
            "ssh = \"ops@10.0.0.5:99999\"\naddress = \"127.0.0.2\"\n",
            "\"ops@10.0.0.5:99999\"",
        ),
        inventory_case(
            "empty root",
            "ssh = \"mainpc\"\naddress = \"127.0.0.2\"\nroot = \"\"\n",
            "\"\"",
        ),
        inventory_case(
            "relative root",
            "ssh = \"mainpc\"\naddress = \"127.0.0.2\"\nroot = \"relative/root\"\n",
            "\"relative/root\"",
        ),
        inventory_case(
            "root with a space",
            "ssh = \"mainpc\"\naddress = \"127.0.0.2\"\nroot = \"/srv/wv root\"\n",
            "\"/srv/wv root\"",
        ),
        inventory_case(
            "root with ..",
            "ssh = \"mainpc\"\naddress = \"127.0.0.2\"\nroot = \"/srv/../etc\"\n",
            "\"/srv/../etc\"",
        ),
        inventory_case(
            "root that is /",
            "ssh = \"mainpc\"\naddress = \"127.0.0.2\"\nroot = \"/\"\n",
            "\"/\"",
        ),
        inventory_case(
            "inventory var name with a command",
            "ssh = \"mainpc\"\naddress = \"127.0.0.2\"\nvars = { \"x; id\" = \"1\" }\n",
            "\"x; id\"",
        ),
        inventory_case(
            "inventory env name with a command",
            "ssh = \"mainpc\"\naddress = \"127.0.0.2\"\nenv = { \"PATH=/x; id\" = \"1\" }\n",
            "\"PATH=/x; id\"",
        ),
        inventory_case(
            "inventory env value with a NUL",
            "ssh = \"mainpc\"\naddress = \"127.0.0.2\"\nenv = { PATH = \"/bin\\u0000$(id)\" }\n",
            "\"/bin\\u0000$(id)\"",
        ),
        inventory_case(
            "group name with a newline",
            "ssh = \"mainpc\"\naddress = \"127.0.0.2\"\ngroups = [\"edge\\n[[host]]\"]\n",
            "\"edge\\n[[host]]\"",
        ),
        plan_case(
            "hosts entry with a command",
            "\n[[process]]\nname = \"p\"\nhosts = [\"mainpc; id\"]\ncommand = [\"sleep\", \"1\"]\n",
            "\"mainpc; id\"",
        ),
        plan_case(
            "telegram chat id with a newline",
            "\n[[alertmanager]]\nname = \"am\"\nhost = \"mainpc\"\n[[alertmanager.receiver]]\nname = \"tg\"\ntelegram = { bot_token = \"TELEGRAM_TOKEN\", chat_id = \"1\\nreceivers: []\" }\n",
            "\"1\\nreceivers: []\"",
        ),
        plan_case(
            "webhook url with a newline",
            "\n[[alertmanager]]\nname = \"am\"\nhost = \"mainpc\"\n[[alertmanager.receiver]]\nname = \"wh\"\nwebhook = { url = \"http://x/\\n$(id)\" }\n",
            "\"http://x/\\n$(id)\"",
        ),
        plan_case(
            "postgres host with a command substitution",
            &pg_set(
                "host = \"db$(touch /tmp/wv-hostile-marker)\", user = \"app\", dbname = \"app\", password_secret = \"PG_PW\"",
            ),
            "\"db$(touch",
        ),
        plan_case(
            "postgres user with a quote and a space",
            &pg_set(
                "host = \"127.0.0.1\", user = \"app' OR '1\", dbname = \"app\", password_secret = \"PG_PW\"",
            ),
            "\"app' OR",
        ),
        plan_case(
            "postgres dbname ending a passfile field",
            &pg_set(
                "host = \"127.0.0.1\", user = \"app\", dbname = \"app:*:*\\nx\", password_secret = \"PG_PW\"",
            ),
            "\"app:*:*",
        ),
        plan_case(
            "postgres password secret name with a command",
            &pg_set(
                "host = \"127.0.0.1\", user = \"app\", dbname = \"app\", password_secret = \"PW;id\"",
            ),
            "\"PW;id\"",
        ),
        plan_case(
            "unknown migration engine",
            "\n[[migration]]\nname = \"db\"\nhost = \"mainpc\"\nengine = \"mysql$(id)\"\ndatabase = \"x.db\"\ndir = \"migrations/app\"\n",
            "\"mysql$(id)\"",
        ),
        plan_case(
            "drill threshold with a command",
            "\n[drill]\nrestart_max = \"5s; touch /tmp/wv-hostile-marker\"\n",
            "\"5s; touch /tmp/wv-hostile-marker\"",
        ),
        plan_case(
            "drill threshold out of range",
            "\n[drill]\nrecovery_max = \"0s\"\n",
            "\"0s\"",
        ),
        plan_case(
            "drill probe count as a string",
            "\n[drill]\nprobe_messages = \"100 $(id)\"\n",
            "\"100 $(id)\"",
        ),
        plan_case(
            "drill unknown key",
            "\n[drill]\nnft_rule = \"drop\"\n",
            "nft_rule",
        ),
        plan_case(
            "hosts selector with ..",
            "\n[[process]]\nname = \"p\"\nhosts = \"group:../etc\"\ncommand = [\"sleep\", \"1\"]\n",
            "\"group:../etc\"",
        ),
    ]
}

impl Refused {
    fn with_plan(mut self, plan: &str, needle: &'static str) -> Refused {
        self.plan = plan.to_string();
        self.needle = needle;
        self
    }
}

#[test]
fn every_hostile_value_is_refused_at_its_position() {
    let cases = refused_cases();
    assert!(cases.len() >= 40, "{} cases", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let mut repo = Repo::with_plan(&case.plan)
            .file("migrations/app/0001_init.up.sql", "CREATE TABLE t (a);\n");
        repo = repo.file("migrations/app/0001_init.down.sql", "DROP TABLE t;\n");
        let (file, text) = match &case.inventory {
            Some(inv) => {
                repo = repo.file("inventories/lab.toml", inv);
                ("inventories/lab.toml", inv.as_str())
            }
            None => ("plans/p.toml", case.plan.as_str()),
        };
        let (line, col) = position(text, case.needle);
        let run = repo.validate();
        let expected = format!("{file}:{line}:{col}: error: ");
        if run.code != 1 || !run.stderr.contains(&expected) {
            failures.push(format!(
                "{}: expected exit 1 and `{expected}`, got exit {}:\n{}",
                case.what, run.code, run.stderr
            ));
        }
    }
    assert!(!marker().exists() && !Path::new("/tmp/wv-hostile-marker").exists());
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn a_plan_that_is_not_utf8_is_refused_with_its_line() {
    let repo = Repo::with_plan("").file("plans/p.toml", "");
    std::fs::write(
        repo.path().join("plans/p.toml"),
        b"version = 1\nname = \"t\"\n# caf\xe9\n",
    )
    .expect("write");
    let run = repo.validate();
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("line 3, column 6") && run.stderr.contains("UTF-8"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_ten_megabyte_line_is_not_echoed_whole() {
    let plan = format!(
        "{HEADER}vars = {{ A = \"{}\" }}\nbad = 1\n",
        "x".repeat(10 << 20)
    );
    let plan = plan.replace(
        "bad = 1\n",
        &format!("bad = \"{}\"\n", "y".repeat(10 << 20)),
    );
    let run = Repo::with_plan(&plan).validate();
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.len() < 10_000,
        "{} bytes of stderr",
        run.stderr.len()
    );
    assert!(
        run.stderr
            .contains("plans/p.toml:4:1: error: unknown key `bad`"),
        "{}",
        &run.stderr[..run.stderr.len().min(2000)]
    );
}

/// Every delimiter the host scripts use, quotes, substitutions, `%`, backslashes, a NUL.
const HOSTILE_CONTENT: &str = "WV_EOF\nWV_B64\nWV_WANT\nEOF_WANT\nWV_SQL\nWV_SQL_1\nWV_LOCK\nEOF\n'\"`touch /tmp/wv-hostile-marker`\"'\n$(touch /tmp/wv-hostile-marker)\n%(here)s %% \\ \\n ; # [program:evil]\n\u{0}end";

/// Arguments that each of shell, supervisord's INI reader and its shlex split would read
/// differently if they were not carried exactly.
const HOSTILE_ARGS: &[&str] = &[
    "100%",
    "%(ENV_HOME)s",
    "a ;b",
    "c #d",
    "it's",
    "\"q\"",
    "$(touch /tmp/wv-hostile-marker)",
    "`touch /tmp/wv-hostile-marker`",
    "x\\y",
    "  lead",
    "tab\there",
];

const HOSTILE_ENV: &str =
    "it's $(touch /tmp/wv-hostile-marker) `id` \"q\" \\ %(here)s\nsecond line";
const HOSTILE_SECRET: &str = "s3'cr\"et $(touch /tmp/wv-hostile-marker)\nline2 %%";

fn toml_string(s: &str) -> String {
    serde_json::to_string(s).expect("json string")
}

/// The hostile plan that must apply: a file of hostile bytes, a process whose argv, env and
/// secret are hostile and which writes them under the root's data/ to be compared.
fn hostile_plan() -> String {
    let args: Vec<String> = HOSTILE_ARGS.iter().map(|a| toml_string(a)).collect();
    format!(
        r#"{HEADER}
[[file]]
name = "hostile"
host = "mainpc"
path = "hostile/every-delimiter.txt"
content = {content}
mode = "0640"

[[process]]
name = "echo-argv"
host = "mainpc"
cwd = "{{{{ root }}}}/data"
command = ["/bin/sh", "-c", "for a in \"$@\"; do printf '%s\\n' \"$a\"; done > argv.txt; printf '%s' \"$V1\" > env.txt; printf '%s' \"$TOKEN\" > secret.txt; exec sleep 600", "echo-argv", {args}]
env = {{ V1 = {env} }}
secrets = ["TOKEN"]

[[wave]]
name = "w.1-a_b"
select = ["file.*", "process.*"]
"#,
        content = toml_string(HOSTILE_CONTENT),
        args = args.join(", "),
        env = toml_string(HOSTILE_ENV),
    )
}

/// Applies the hostile plan and proves what it wrote under `root`.
fn apply_and_prove(repo: &Repo, root: &Path) {
    let _ = std::fs::remove_file("/tmp/wv-hostile-marker");
    let apply = repo.run(&["apply", "--yes", "plans/p.toml"]);
    assert_eq!(apply.code, 0, "{}\n{}", apply.stdout, apply.stderr);
    let file = root.join("files/hostile/every-delimiter.txt");
    assert_eq!(
        std::fs::read(&file).expect("hostile file"),
        HOSTILE_CONTENT.as_bytes()
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&file).expect("meta").permissions().mode() & 0o777,
        0o640
    );
    let data = root.join("data");
    let mut argv = String::new();
    for _ in 0..100 {
        argv = std::fs::read_to_string(data.join("argv.txt")).unwrap_or_default();
        if argv.lines().count() >= HOSTILE_ARGS.len() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let expected: String = HOSTILE_ARGS.iter().map(|a| format!("{a}\n")).collect();
    assert_eq!(argv, expected, "argv as the process received it");
    assert_eq!(
        std::fs::read_to_string(data.join("env.txt")).expect("env"),
        HOSTILE_ENV
    );
    assert_eq!(
        std::fs::read_to_string(data.join("secret.txt")).expect("secret"),
        HOSTILE_SECRET
    );
    assert!(
        !Path::new("/tmp/wv-hostile-marker").exists(),
        "an injected command ran"
    );
    // Exactly the planned programs: no section smuggled into the program files.
    let pm2 = root.join("files/pm2");
    let (dir, file) = if pm2.exists() {
        (pm2, "echo-argv.json")
    } else {
        (root.join("files/supervisor/programs"), "echo-argv.conf")
    };
    let programs: Vec<String> = std::fs::read_dir(&dir)
        .expect("programs")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(programs, vec![file.to_string()]);
    let conf = std::fs::read_to_string(dir.join(file)).expect("program file");
    if file.ends_with(".json") {
        // One app, its argv the planned one word for word, no secret in it.
        let doc: serde_json::Value = serde_json::from_str(&conf).expect("ecosystem JSON");
        let apps = doc["apps"].as_array().expect("apps");
        assert_eq!(apps.len(), 1, "{conf}");
        let args: Vec<&str> = apps[0]["args"]
            .as_array()
            .expect("args")
            .iter()
            .filter_map(|a| a.as_str())
            .collect();
        assert!(args.ends_with(HOSTILE_ARGS), "{args:?}");
        assert!(!conf.contains("cr\\\"et"), "{conf}");
    } else {
        assert_eq!(conf.matches("[program:").count(), 1, "{conf}");
    }
    let diff = repo.run(&["diff", "plans/p.toml"]);
    assert_eq!(diff.code, 0, "{}\n{}", diff.stdout, diff.stderr);
    assert!(!diff.stdout.contains("cr\"et") && !diff.stderr.contains("cr\"et"));
}

#[test]
fn a_hostile_plan_applies_exactly_through_the_local_transport() {
    let roots = tempfile::tempdir().expect("temp");
    let root = roots.path().join("root");
    let _stop = StopSupervisord(root.clone());
    let inventory = format!(
        "[[host]]\nname = \"mainpc\"\ntransport = \"local\"\naddress = \"127.0.71.2\"\nroot = \"{}\"\n",
        root.display()
    );
    let repo = Repo::with_plan(&hostile_plan())
        .file("inventories/lab.toml", &inventory)
        .env("TOKEN", HOSTILE_SECRET)
        .commit("hostile");
    apply_and_prove(&repo, &root);
}

/// pm2 reads `all` and numbers as process selectors: a program so named on a pm2 host is
/// refused at its name, whatever kind of resource it comes from.
#[test]
fn a_program_name_pm2_would_misread_is_refused_on_a_pm2_host() {
    let inventory = "[[host]]\nname = \"mainpc\"\nssh = \"mainpc\"\naddress = \"127.0.10.2\"\nsupervisor = \"pm2\"\n";
    for (tail, needle) in [
        (
            process_with("").replace("name = \"p\"", "name = \"all\""),
            "\"all\"",
        ),
        (
            process_with("").replace("name = \"p\"", "name = \"42\""),
            "\"42\"",
        ),
        (
            "\n[[pushgateway]]\nname = \"007\"\nhost = \"mainpc\"\n".to_string(),
            "\"007\"",
        ),
    ] {
        let plan = format!("{HEADER}{tail}");
        let run = Repo::with_plan(&plan)
            .file("inventories/lab.toml", inventory)
            .validate();
        let (line, col) = position(&plan, needle);
        assert_eq!(run.code, 1, "{plan}\n{}", run.stderr);
        assert!(
            run.stderr
                .contains(&format!("plans/p.toml:{line}:{col}: error: ")),
            "{}",
            run.stderr
        );
        assert!(run.stderr.contains("under pm2"), "{}", run.stderr);
        // The same plan on a supervisord host is fine.
        let run = Repo::with_plan(&plan).validate();
        assert_eq!(run.code, 0, "{}", run.stderr);
    }
}

#[test]
fn a_hostile_plan_applies_exactly_under_pm2_through_the_local_transport() {
    let roots = tempfile::tempdir().expect("temp");
    let root = roots.path().join("root");
    let _stop = crate::pm2_lab::StopPm2(root.clone());
    let inventory = format!(
        "[[host]]\nname = \"mainpc\"\ntransport = \"local\"\naddress = \"127.0.138.2\"\nroot = \"{}\"\nsupervisor = \"pm2\"\n",
        root.display()
    );
    let repo = Repo::with_plan(&hostile_plan())
        .file("inventories/lab.toml", &inventory)
        .env("TOKEN", HOSTILE_SECRET)
        .commit("hostile");
    apply_and_prove(&repo, &root);
}

#[test]
fn a_hostile_plan_applies_exactly_under_pm2() {
    let lab = Lab::up_with(133, 1, &["--supervisor", "pm2"]);
    let repo = Repo::with_plan(&hostile_plan())
        .with_inventory(lab.inventory())
        .env("TOKEN", HOSTILE_SECRET)
        .commit("hostile");
    apply_and_prove(&repo, &lab.root("mainpc"));
}

#[test]
fn a_hostile_plan_applies_exactly_through_ssh() {
    let lab = Lab::up(72, 1);
    let repo = Repo::with_plan(&hostile_plan())
        .with_inventory(lab.inventory())
        .env("TOKEN", HOSTILE_SECRET)
        .commit("hostile");
    apply_and_prove(&repo, &lab.root("mainpc"));
}

#[test]
fn a_migration_cannot_reach_the_shell_or_the_file_system() {
    let roots = tempfile::tempdir().expect("temp");
    let root = roots.path().join("root");
    let inventory = format!(
        "[[host]]\nname = \"mainpc\"\ntransport = \"local\"\naddress = \"127.0.71.3\"\nroot = \"{}\"\n",
        root.display()
    );
    let written = roots.path().join("written-by-sqlite");
    let plan = format!(
        "{HEADER}\n[[migration]]\nname = \"db\"\nhost = \"mainpc\"\ndatabase = \"app.db\"\ndir = \"migrations/app\"\n"
    );
    let up = format!(
        "CREATE TABLE t (a TEXT);\nINSERT INTO t VALUES ('WV_SQL\nWV_SQL_1\n$(touch /tmp/wv-hostile-marker)');\n.shell touch /tmp/wv-hostile-marker\nSELECT writefile('{}', 'x');\n",
        written.display()
    );
    let repo = Repo::with_plan(&plan)
        .file("inventories/lab.toml", &inventory)
        .file("migrations/app/0001_init.up.sql", &up)
        .file("migrations/app/0001_init.down.sql", "DROP TABLE t;\n")
        .commit("hostile migration");
    let _ = std::fs::remove_file("/tmp/wv-hostile-marker");
    let apply = repo.run(&["apply", "--yes", "plans/p.toml"]);
    assert_eq!(apply.code, 1, "{}\n{}", apply.stdout, apply.stderr);
    assert!(
        apply.stderr.contains("0001_init.up.sql") && apply.stderr.contains("safe mode"),
        "{}",
        apply.stderr
    );
    assert!(!Path::new("/tmp/wv-hostile-marker").exists());
    assert!(!written.exists());
    // Rolled back: the table the migration began with is not there.
    let db = root.join("data/app.db");
    if db.exists() {
        let tables = crate::common::sqlite3(
            &db,
            &[],
            "SELECT count(*) FROM sqlite_master WHERE name = 't';",
        );
        assert_eq!(tables.trim(), "0");
    }
}

#[test]
fn the_inventorys_user_host_port_form_reaches_sshd_on_its_port() {
    let lab = Lab::up(73, 1);
    let dir = lab.inventory().parent().expect("lab dir").to_path_buf();
    // An ssh_config that knows the machine's key but not its port: the port comes only from
    // the inventory's `user@host:port`.
    let config = dir.join("ssh_config_noport");
    std::fs::write(
        &config,
        format!(
            "Host 127.0.73.2\n  IdentityFile {d}/id_ed25519\n  IdentitiesOnly yes\n  UserKnownHostsFile {d}/known_hosts\n  GlobalKnownHostsFile /dev/null\n  StrictHostKeyChecking yes\n  BatchMode yes\n",
            d = dir.display()
        ),
    )
    .expect("ssh config");
    let inventory = format!(
        "ssh_config = \"{}\"\n\n[[host]]\nname = \"mainpc\"\nssh = \"t73-mainpc@127.0.73.2:2222\"\naddress = \"127.0.73.2\"\nroot = \"{}\"\n",
        config.display(),
        lab.root("mainpc").display()
    );
    let plan = format!(
        "{HEADER}\n[[file]]\nname = \"f\"\nhost = \"mainpc\"\npath = \"x.txt\"\ncontent = \"x\"\n"
    );
    let repo = Repo::with_plan(&plan)
        .file("inventories/lab.toml", &inventory)
        .commit("port");
    let diff = repo.run(&["diff", "plans/p.toml"]);
    assert_eq!(diff.code, 2, "{}\n{}", diff.stdout, diff.stderr);
    let apply = repo.run(&["apply", "--yes", "plans/p.toml"]);
    assert_eq!(apply.code, 0, "{}\n{}", apply.stdout, apply.stderr);
    assert_eq!(
        std::fs::read_to_string(lab.root("mainpc").join("files/x.txt")).expect("file"),
        "x"
    );
}

#[test]
fn a_postgres_migration_cannot_reach_the_shell_and_a_hostile_password_arrives_exactly() {
    let pg = crate::postgres::Postgres::start(147);
    // Every byte a shell, a heredoc, SQL or a passfile field would read as syntax.
    let password = "p'w\"$(touch /tmp/wv-hostile-marker):x\\y`id`;WV_PSQL WV_B64";
    pg.create_db("app", password, "app");
    let roots = tempfile::tempdir().expect("temp");
    let root = roots.path().join("root");
    let inventory = format!(
        "[[host]]\nname = \"mainpc\"\ntransport = \"local\"\naddress = \"127.0.147.3\"\nroot = \"{}\"\n",
        root.display()
    );
    let plan = format!(
        "{HEADER}\n[[migration]]\nname = \"db\"\nhost = \"mainpc\"\nengine = \"postgres\"\ndir = \"migrations/app\"\npostgres = {{ host = \"{}\", port = {}, user = \"app\", dbname = \"app\", password_secret = \"PG_PW\" }}\n",
        pg.host, pg.port
    );
    let good = "CREATE TABLE t (a text);\nINSERT INTO t VALUES ($$WV_PSQL\nWV_B64\n$(touch /tmp/wv-hostile-marker)$$);\n";
    let repo = Repo::with_plan(&plan)
        .file("inventories/lab.toml", &inventory)
        .file("migrations/app/0001_init.up.sql", good)
        .file("migrations/app/0001_init.down.sql", "DROP TABLE t;\n")
        .env("PG_PW", password)
        .commit("hostile bytes");
    let _ = std::fs::remove_file("/tmp/wv-hostile-marker");
    let apply = repo.run(&["apply", "--yes", "plans/p.toml"]);
    assert_eq!(apply.code, 0, "{}\n{}", apply.stdout, apply.stderr);
    assert_eq!(
        pg.admin("app", "SELECT a FROM t;\n"),
        "WV_PSQL\nWV_B64\n$(touch /tmp/wv-hostile-marker)\n"
    );
    // psql meta-commands in a migration reach the server as SQL, never psql: refused there.
    let bad = "CREATE TABLE u (a text);\n\\! touch /tmp/wv-hostile-marker\n\\o /tmp/wv-hostile-marker\nSELECT 1;\n";
    let repo = repo
        .file("migrations/app/0002_shell.up.sql", bad)
        .file("migrations/app/0002_shell.down.sql", "DROP TABLE u;\n")
        .commit("meta-commands");
    let apply = repo.run(&["apply", "--yes", "plans/p.toml"]);
    assert_eq!(apply.code, 1, "{}\n{}", apply.stdout, apply.stderr);
    assert!(
        apply
            .stderr
            .contains("0002_shell.up.sql: line 2: syntax error at or near \"\\\""),
        "{}",
        apply.stderr
    );
    assert!(!Path::new("/tmp/wv-hostile-marker").exists());
    assert!(!marker().exists());
    assert_eq!(
        pg.admin(
            "app",
            "SELECT count(*) FROM pg_tables WHERE tablename = 'u';\n"
        ),
        "0\n"
    );
}
