//! Tera templates for every file wavectl writes: defaults compiled into the binary, each
//! overridable by a file of the same name in the plan repo's `templates/`.

use std::collections::BTreeMap;

use tera::{Context, Kwargs, State, Tera};

use crate::diagnostic::Diagnostic;

/// The built-in templates, by name.
pub const EMBEDDED: &[(&str, &str)] = &[
    (
        "prometheus.yml.tera",
        include_str!("../templates/prometheus.yml.tera"),
    ),
    (
        "prometheus-rules.yml.tera",
        include_str!("../templates/prometheus-rules.yml.tera"),
    ),
    (
        "nats.conf.tera",
        include_str!("../templates/nats.conf.tera"),
    ),
    (
        "agent.env.tera",
        include_str!("../templates/agent.env.tera"),
    ),
    (
        "agent-heartbeat.sh.tera",
        include_str!("../templates/agent-heartbeat.sh.tera"),
    ),
    (
        "process.env.tera",
        include_str!("../templates/process.env.tera"),
    ),
    (
        "run-with-env.sh.tera",
        include_str!("../templates/run-with-env.sh.tera"),
    ),
    (
        "alertmanager.yml.tera",
        include_str!("../templates/alertmanager.yml.tera"),
    ),
    (
        "redact-bot-token.sh.tera",
        include_str!("../templates/redact-bot-token.sh.tera"),
    ),
    (
        "blackbox.yml.tera",
        include_str!("../templates/blackbox.yml.tera"),
    ),
    (
        "supervisord.conf.tera",
        include_str!("../templates/supervisord.conf.tera"),
    ),
    (
        "supervisor-spawns.sh.tera",
        include_str!("../templates/supervisor-spawns.sh.tera"),
    ),
    (
        "supervisor-program.conf.tera",
        include_str!("../templates/supervisor-program.conf.tera"),
    ),
];

/// A template's text and the file it came from (for error positions).
#[derive(Debug, Clone)]
pub struct TemplateSource {
    pub file: String,
    pub text: String,
}

/// The loaded templates; rendering errors carry the template's file, line and column.
pub struct Templates {
    tera: Tera,
    sources: BTreeMap<String, TemplateSource>,
}

/// The built-in templates of this binary, by name.
pub fn builtins() -> BTreeMap<String, String> {
    EMBEDDED
        .iter()
        .map(|(name, text)| (name.to_string(), text.to_string()))
        .collect()
}

impl Templates {
    /// `builtins`: the built-in templates (this binary's, or those an older generation
    /// recorded); `overrides`: template name -> source from the plan repo's `templates/`.
    /// Templates there that are not built in are available too (for `[[file]] template`).
    pub fn load(
        builtins: &BTreeMap<String, String>,
        overrides: &BTreeMap<String, TemplateSource>,
    ) -> Result<Templates, Vec<Diagnostic>> {
        let mut sources: BTreeMap<String, TemplateSource> = builtins
            .iter()
            .map(|(name, text)| {
                let src = TemplateSource {
                    file: format!("<built-in>/templates/{name}"),
                    text: text.clone(),
                };
                (name.clone(), src)
            })
            .collect();
        for (name, src) in overrides {
            sources.insert(name.clone(), src.clone());
        }
        let mut tera = Tera::new();
        tera.autoescape_on(Vec::<&'static str>::new());
        tera.register_filter("json", json_filter);
        tera.register_filter("sh", sh_filter);
        let mut diags = Vec::new();
        for (name, src) in &sources {
            if let Err(e) = tera.add_raw_template(name, &src.text) {
                diags.push(template_diagnostic(name, src, &e));
            }
        }
        if diags.is_empty() {
            Ok(Templates { tera, sources })
        } else {
            Err(diags)
        }
    }

    pub fn contains(&self, name: &str) -> bool {
        self.sources.contains_key(name)
    }

    pub fn render(&self, name: &str, context: &Context) -> Result<String, Diagnostic> {
        let Some(src) = self.sources.get(name) else {
            return Err(Diagnostic::whole_file(
                &format!("templates/{name}"),
                format!("template `{name}` does not exist"),
            ));
        };
        self.tera
            .render(name, context)
            .map_err(|e| template_diagnostic(name, src, &e))
    }

    /// The template sources, for showing diagnostics with their lines.
    pub fn sources(&self) -> impl Iterator<Item = &TemplateSource> {
        self.sources.values()
    }
}

/// `{{ value | json }}`: a JSON literal, which is also a valid YAML and NATS-conf string.
fn json_filter(value: tera::Value, _: Kwargs, _: &State) -> String {
    serde_json::to_string(&value).unwrap_or_default()
}

/// `{{ value | sh }}`: one POSIX shell word (env files are sourced by the process wrapper).
fn sh_filter(value: tera::Value, _: Kwargs, _: &State) -> String {
    match value.as_str() {
        Some(text) => crate::backend::script::quote(text),
        None => crate::backend::script::quote(&value.to_string()),
    }
}

/// Renders a single string (a command argument, say) as a template.
pub fn render_str(text: &str, context: &Context) -> Result<String, String> {
    Tera::one_off(text, context, false).map_err(|e| error_message(&e))
}

fn error_message(e: &tera::Error) -> String {
    let mut msg = match e.kind() {
        tera::ErrorKind::SyntaxError(r) | tera::ErrorKind::RenderingError(r) => {
            r.message().to_string()
        }
        _ => e.to_string(),
    };
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        msg.push_str(&format!(": {s}"));
        source = s.source();
    }
    msg
}

fn template_diagnostic(name: &str, src: &TemplateSource, e: &tera::Error) -> Diagnostic {
    let span = match e.kind() {
        tera::ErrorKind::SyntaxError(r) | tera::ErrorKind::RenderingError(r) => {
            let s = r.span();
            offset_of(&src.text, s.start_line, s.start_col)
                ..offset_of(&src.text, s.end_line, s.end_col)
        }
        _ => 0..0,
    };
    Diagnostic::new(
        &src.file,
        span,
        format!("template `{name}`: {}", error_message(e)),
    )
}

/// Byte offset of a 1-based line and 0-based column (Tera's convention).
fn offset_of(text: &str, line: usize, col: usize) -> usize {
    let start: usize = text
        .split_inclusive('\n')
        .take(line.saturating_sub(1))
        .map(str::len)
        .sum();
    let line_text = text[start..].lines().next().unwrap_or("");
    start
        + line_text
            .char_indices()
            .nth(col)
            .map_or(line_text.len(), |(i, _)| i)
}
