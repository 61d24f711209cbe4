//! `FakeHost`: a host played from a script of answers, for unit tests of the executor. It
//! records every script it is given and answers by the kind of script: the lock is free, step
//! scripts (waves, rollbacks, finish) print their `step N` lines, and it can be told to fail
//! the step whose body contains a text, or every undo.

use std::net::SocketAddr;
use std::sync::Mutex;

use futures::future::LocalBoxFuture;

use crate::backend::apply::{done_line, failed_line};
use crate::transport::{Host, ScriptOutput, TransportError};

#[derive(Debug, Default)]
pub struct FakeHost {
    name: String,
    fail_step: Option<String>,
    fail_undo: bool,
    answers: Vec<(String, ScriptOutput)>,
    received: Mutex<Vec<String>>,
}

impl FakeHost {
    pub fn new(name: &str) -> Self {
        FakeHost {
            name: name.into(),
            ..FakeHost::default()
        }
    }

    /// The step (of a wave script, not of a rollback) whose body contains `text` fails.
    pub fn fail_step(mut self, text: &str) -> Self {
        self.fail_step = Some(text.into());
        self
    }

    /// Every rollback script fails at its first step.
    pub fn fail_undo(mut self) -> Self {
        self.fail_undo = true;
        self
    }

    /// A script containing `text` (and not a step script) gets this answer.
    pub fn answer(mut self, text: &str, status: i32, stdout: &str) -> Self {
        self.answers.push((
            text.into(),
            ScriptOutput {
                status: Some(status),
                stdout: stdout.into(),
                stderr: String::new(),
            },
        ));
        self
    }

    /// Every script run so far, in order.
    pub fn scripts(&self) -> Vec<String> {
        self.received
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn play(&self, script: &str, on_line: &mut dyn FnMut(&str)) -> ScriptOutput {
        self.received
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(script.to_string());
        let steps = step_bodies(script);
        if steps.is_empty() {
            if let Some((_, answer)) = self
                .answers
                .iter()
                .find(|(t, _)| script.contains(t.as_str()))
            {
                return answer.clone();
            }
            // The lock is free.
            return ok(if script.contains("set -C;") {
                "locked\n"
            } else {
                ""
            });
        }
        let undo = script.contains("\nW='\"rollback ");
        let mut stdout = String::new();
        for (i, body) in steps.iter().enumerate() {
            let n = i + 1;
            let fails = if undo {
                self.fail_undo
            } else {
                self.fail_step
                    .as_ref()
                    .is_some_and(|t| body.contains(t.as_str()))
            };
            let line = if fails { failed_line(n) } else { done_line(n) };
            on_line(&line);
            stdout.push_str(&line);
            stdout.push('\n');
            if fails {
                return ScriptOutput {
                    status: Some(1),
                    stdout,
                    stderr: format!("{}: step {n} failed as told\n", self.name),
                };
            }
        }
        ok(&stdout)
    }
}

fn ok(stdout: &str) -> ScriptOutput {
    ScriptOutput {
        status: Some(0),
        stdout: stdout.into(),
        stderr: String::new(),
    }
}

/// The text of each numbered step of a step script (from one `WV_STEP=N` line to the next).
fn step_bodies(script: &str) -> Vec<String> {
    let mut steps: Vec<String> = Vec::new();
    for line in script.lines() {
        if line.starts_with("WV_STEP=") && line != "WV_STEP=0" {
            steps.push(String::new());
        } else if let Some(body) = steps.last_mut() {
            body.push_str(line);
            body.push('\n');
        }
    }
    steps
}

impl Host for FakeHost {
    fn name(&self) -> &str {
        &self.name
    }

    fn run_streaming<'a>(
        &'a self,
        script: &'a str,
        on_line: &'a mut dyn FnMut(&str),
    ) -> LocalBoxFuture<'a, Result<ScriptOutput, TransportError>> {
        Box::pin(async move { Ok(self.play(script, on_line)) })
    }

    fn forward<'a>(
        &'a self,
        address: &'a str,
        port: u16,
    ) -> LocalBoxFuture<'a, Result<SocketAddr, TransportError>> {
        Box::pin(async move {
            Err(TransportError::Local {
                host: self.name.clone(),
                source: std::io::Error::other(format!(
                    "a fake host forwards nothing ({address}:{port})"
                )),
            })
        })
    }
}
