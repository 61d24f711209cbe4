//! Wave order and membership, as pure functions of the plan: waves run in file order except
//! where `after` says otherwise, and each resource belongs to the first wave that selects it.

use std::collections::BTreeMap;

use crate::plan::resource::{Instance, Selector};
use crate::plan::schema::Plan;

/// The name of the single wave of a plan that declares none.
pub const IMPLICIT_WAVE: &str = "all";

/// Run order as indices into `plan.waves`, or the indices of a cycle of `after` references.
pub fn order(plan: &Plan) -> Result<Vec<usize>, Vec<usize>> {
    let n = plan.waves.len();
    let index: BTreeMap<&str, usize> = plan
        .waves
        .iter()
        .enumerate()
        .map(|(i, w)| (w.name.get_ref().as_str(), i))
        .collect();
    // deps[i] = waves that must run before wave i (unknown names are validate's business).
    let deps: Vec<Vec<usize>> = plan
        .waves
        .iter()
        .map(|w| {
            w.after
                .iter()
                .filter_map(|a| index.get(a.get_ref().as_str()).copied())
                .collect()
        })
        .collect();
    let mut done = vec![false; n];
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        // The first wave in file order whose dependencies all ran.
        let next = (0..n).find(|&i| !done[i] && deps[i].iter().all(|&d| done[d]));
        match next {
            Some(i) => {
                done[i] = true;
                out.push(i);
            }
            None => return Err(find_cycle(&deps, &done)),
        }
    }
    Ok(out)
}

fn find_cycle(deps: &[Vec<usize>], done: &[bool]) -> Vec<usize> {
    // Every wave left has an unfinished dependency; walking them must revisit a wave.
    let mut at = (0..deps.len()).find(|&i| !done[i]).unwrap_or(0);
    let mut path: Vec<usize> = Vec::new();
    loop {
        if let Some(pos) = path.iter().position(|&p| p == at) {
            return path[pos..].to_vec();
        }
        path.push(at);
        match deps[at].iter().find(|&&d| !done[d]) {
            Some(&d) => at = d,
            None => return path,
        }
    }
}

/// For every resource on each of its hosts, the index (into `plan.waves`) of the wave that
/// deploys it; instances no wave selects are absent. `order` is the run order from [`order`].
pub fn assign(plan: &Plan, order: &[usize]) -> BTreeMap<Instance, usize> {
    let mut out = BTreeMap::new();
    for r in plan.resources() {
        let wave = order.iter().copied().find(|&w| {
            plan.waves[w]
                .select
                .iter()
                .filter_map(|s| Selector::parse(s.get_ref()).ok())
                .any(|s| s.matches(&r))
        });
        if let Some(w) = wave {
            out.insert(r.instance(), w);
        }
    }
    out
}
