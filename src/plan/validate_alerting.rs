//! Cross-references of the alerting path: hubs' `alerting` and `blackbox`, alertmanagers'
//! receivers and routes, the secrets their receivers need, the derived rules a hub skips.

use std::collections::BTreeSet;

use super::Checker;
use crate::diagnostic::Diagnostic;
use crate::plan::health;
use crate::plan::resource::Kind;

impl Checker<'_> {
    pub(super) fn alerting(&mut self, provided: &BTreeSet<String>) {
        let plan = self.plan;
        for hub in &plan.hubs {
            for am in &hub.alerting {
                self.exists(Kind::Alertmanager, am, "alerting");
            }
            if let Some(b) = &hub.blackbox {
                self.exists(Kind::Blackbox, b, "blackbox");
            } else if !hub.alerting.is_empty()
                && health::needs_blackbox(plan)
                && !plan
                    .blackboxes
                    .iter()
                    .any(|b| b.host.get_ref() == hub.host.get_ref())
            {
                self.error(
                    hub.name.span(),
                    format!(
                        "hub `{}` has `alerting` and the plan has NATS servers or http/tcp process health probes to watch; expected a [[blackbox]] on host `{}` or `blackbox = \"...\"` on the hub",
                        hub.name.get_ref(),
                        hub.host.get_ref()
                    ),
                );
            }
            if *hub.health.heartbeat_missed.get_ref() == 0 {
                self.error(
                    hub.health.heartbeat_missed.span(),
                    "`heartbeat_missed = 0` fires at once, expected 1 or more intervals",
                );
            }
            for skip in &hub.health.skip {
                if !health::RULE_NAMES.contains(&skip.get_ref().as_str()) {
                    self.error(
                        skip.span(),
                        format!(
                            "`skip` names `{}`, which is no derived rule; expected one of {}",
                            skip.get_ref(),
                            health::RULE_NAMES
                                .iter()
                                .map(|n| format!("`{n}`"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    );
                }
            }
        }
        for am in &plan.alertmanagers {
            let name = am.name.get_ref();
            if am.receivers.is_empty() {
                self.error(
                    am.name.span(),
                    format!("alertmanager `{name}` has no receiver, expected at least one [[alertmanager.receiver]]"),
                );
            }
            let mut seen = BTreeSet::new();
            for r in &am.receivers {
                if !seen.insert(r.name.get_ref().as_str()) {
                    self.error(
                        r.name.span(),
                        format!(
                            "duplicate receiver name `{}` in alertmanager `{name}`",
                            r.name.get_ref()
                        ),
                    );
                }
                let kinds = usize::from(r.telegram.is_some()) + usize::from(r.webhook.is_some());
                if kinds != 1 {
                    self.error(
                        r.name.span(),
                        format!("receiver `{}` needs exactly one of `telegram` or `webhook`, found {kinds}", r.name.get_ref()),
                    );
                }
                if let Some(t) = &r.telegram {
                    let secret = &t.get_ref().bot_token;
                    if !provided.contains(secret.get_ref().as_str()) {
                        self.diags.push(
                            Diagnostic::new(self.file, secret.span(), format!("secret `{}` is not provided", secret.get_ref()))
                                .with_hint(format!("export {} in the environment, or add `{} = \"...\"` to the secrets file (--secrets-file, outside the plan repo)", secret.get_ref(), secret.get_ref())),
                        );
                    }
                }
            }
            let names: Vec<&str> = am
                .receivers
                .iter()
                .map(|r| r.name.get_ref().as_str())
                .collect();
            let targets = am
                .route
                .receiver
                .iter()
                .chain(am.route.routes.iter().map(|r| &r.receiver));
            for target in targets {
                if !names.contains(&target.get_ref().as_str()) {
                    self.error(
                        target.span(),
                        format!(
                            "route of alertmanager `{name}` sends to receiver `{}`, which does not exist; expected one of {}",
                            target.get_ref(),
                            names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
                        ),
                    );
                }
            }
        }
    }
}
