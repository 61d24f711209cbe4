//! `wavectl validate` on bad alerting: each problem at its value's `file:line:col`, saying what
//! was expected.

use crate::common::Repo;

const HEAD: &str =
    "version = 1\nname = \"t\"\n\n[[hub]]\nname = \"central\"\nhost = \"mainpc\"\nport = 9100\n";
/// Lines 8-13: an alertmanager with one receiver `tg`, its kind on line 14.
const AM: &str = "\n[[alertmanager]]\nname = \"am\"\nhost = \"mainpc\"\n[[alertmanager.receiver]]\nname = \"tg\"\n";

#[track_caller]
fn reports(tail: &str, expected: &str) {
    let run = Repo::with_plan(&format!("{HEAD}{tail}"))
        .env("TELEGRAM_TOKEN", "1:x")
        .validate();
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains(expected),
        "stderr lacks:\n{expected}\n---\n{}",
        run.stderr
    );
}

#[test]
fn a_hub_alerting_through_a_missing_alertmanager_is_pointed_at() {
    reports(
        "alerting = [\"am-x\"]\n",
        "plans/p.toml:8:13: error: `alerting` refers to alertmanager `am-x`, which does not exist; the plan has no alertmanager\n",
    );
}

#[test]
fn a_telegram_chat_id_must_be_an_integer_once_rendered() {
    reports(
        &format!("{AM}telegram = {{ bot_token = \"TELEGRAM_TOKEN\", chat_id = \"twelve\" }}\n"),
        "plans/p.toml:14:54: error: receiver `tg` chat_id, once rendered, is `twelve`, expected a Telegram chat id (an integer such as -1001234567890)\n",
    );
}

#[test]
fn a_bot_token_secret_must_be_provided() {
    reports(
        &format!("{AM}telegram = {{ bot_token = \"TG_MISSING\", chat_id = \"12\" }}\n"),
        "plans/p.toml:14:26: error: secret `TG_MISSING` is not provided\n",
    );
}

#[test]
fn a_webhook_url_must_be_http() {
    reports(
        &format!("{AM}webhook = {{ url = \"ftp://x\" }}\n"),
        "plans/p.toml:14:19: error: receiver `tg` url, once rendered: `ftp://x` is not an http:// or https:// URL\n",
    );
}

#[test]
fn a_receiver_needs_a_kind_and_alert_quiet_an_alertmanager_of_the_plan() {
    let tail = format!(
        "{AM}\n[[wave]]\nname = \"w\"\nselect = [\"hub.*\", \"alertmanager.*\"]\n[[wave.gate]]\nalert_quiet = {{ alertmanager = \"am2\" }}\n"
    );
    reports(
        &tail,
        "plans/p.toml:13:8: error: receiver `tg` needs exactly one of `telegram` or `webhook`, found 0\n",
    );
    reports(
        &tail,
        "plans/p.toml:19:32: error: `alert_quiet.alertmanager` refers to alertmanager `am2`, which does not exist; expected one of `am`\n",
    );
}
