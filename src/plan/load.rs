//! Plan text -> `Plan`, with every schema problem (malformed TOML, unknown key, wrong type,
//! missing field) reported at its position. Cross-references are checked later by `validate`.

use crate::diagnostic::Diagnostic;
use crate::plan::schema::Plan;
use crate::toml_doc::Document;

const TOP_LEVEL: &[&str] = &[
    "version",
    "name",
    "vars",
    "hub",
    "pushgateway",
    "nats",
    "stream",
    "batch",
    "process",
    "migration",
    "file",
    "alertmanager",
    "blackbox",
    "wave",
    "drill",
];

/// The only plan schema version this build understands.
pub const PLAN_VERSION: u32 = 1;

/// Parses a plan; the diagnostics are empty when the plan has the right shape.
pub fn parse_plan(file: &str, text: &str) -> (Plan, Vec<Diagnostic>) {
    let mut doc = Document::parse(file, text);
    let mut plan = Plan::default();
    if doc.is_malformed() {
        return (plan, doc.diagnostics);
    }
    let mut version = None;
    let mut name = None;
    for (key, value) in doc.take_entries() {
        match key.get_ref().as_str() {
            "version" => {
                let span = value.span();
                version = doc.value::<u32>(value).map(|v| (v, span));
            }
            "name" => name = doc.value::<crate::value::Ident>(value),
            "vars" => plan.vars = doc.value(value).unwrap_or_default(),
            "hub" => plan.hubs = doc.array("hub", value),
            "pushgateway" => plan.pushgateways = doc.array("pushgateway", value),
            "nats" => plan.nats = doc.array("nats", value),
            "stream" => plan.streams = doc.array("stream", value),
            "batch" => plan.batches = doc.array("batch", value),
            "process" => plan.processes = doc.array("process", value),
            "migration" => plan.migrations = doc.array("migration", value),
            "file" => plan.files = doc.array("file", value),
            "alertmanager" => plan.alertmanagers = doc.array("alertmanager", value),
            "blackbox" => plan.blackboxes = doc.array("blackbox", value),
            "wave" => plan.waves = doc.array("wave", value),
            "drill" => plan.drill = doc.value(value).unwrap_or_default(),
            _ => doc.unknown_key(&key, TOP_LEVEL),
        }
    }
    match version {
        Some((v, _)) if v == PLAN_VERSION => plan.version = v,
        Some((v, span)) => doc.error(
            span,
            format!("unsupported plan version {v}, expected `version = {PLAN_VERSION}`"),
        ),
        None => doc.error(0..0, format!("missing field `version`, expected `version = {PLAN_VERSION}` at the top of the plan")),
    }
    match name {
        Some(n) => plan.name = n,
        None => doc.error(
            0..0,
            "missing field `name`, expected `name = \"...\"` at the top of the plan",
        ),
    }
    (plan, doc.diagnostics)
}
