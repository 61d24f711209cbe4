//! The program names a pm2 host cannot take: pm2 reads `all` as every process and a number as
//! a process id, so a program so named would make `pm2 stop NAME` act on others.

use crate::inventory::Supervisor;

use super::Checker;

impl Checker<'_> {
    pub(super) fn pm2_program_names(&mut self) {
        let plan = self.plan;
        let named = plan
            .processes
            .iter()
            .map(|p| (&p.name, &p.host, "process"))
            .chain(plan.hubs.iter().map(|r| (&r.name, &r.host, "hub")))
            .chain(
                plan.pushgateways
                    .iter()
                    .map(|r| (&r.name, &r.host, "pushgateway")),
            )
            .chain(plan.nats.iter().map(|r| (&r.name, &r.host, "nats")))
            .chain(
                plan.alertmanagers
                    .iter()
                    .map(|r| (&r.name, &r.host, "alertmanager")),
            )
            .chain(
                plan.blackboxes
                    .iter()
                    .map(|r| (&r.name, &r.host, "blackbox")),
            );
        let mut bad = Vec::new();
        for (name, host, kind) in named {
            let on_pm2 = self
                .inventory
                .host(host.get_ref())
                .is_some_and(|h| *h.supervisor.get_ref() == Supervisor::Pm2);
            let n = name.get_ref().as_str();
            if on_pm2 && (n == "all" || n.bytes().all(|b| b.is_ascii_digit())) {
                bad.push((name.span(), format!(
                    "{kind} `{n}` runs on host `{}` under pm2, which reads `{n}` as {}; expected a name with a letter that is not `all`",
                    host.get_ref(),
                    if n == "all" { "every process" } else { "a process id" }
                )));
            }
        }
        for (span, message) in bad {
            self.error(span, message);
        }
    }
}
