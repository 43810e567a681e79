//! The resources' dependency order: a deterministic topological sort, and cycle reporting.

use std::collections::{BTreeMap, BTreeSet};

use crate::TemplateError;

/// Orders `deps` (id → ids it depends on) so every id comes after its dependencies; among ids that
/// are ready at the same time the smallest logical id goes first. A cycle is an error naming the
/// resources on it (and between cycles), sorted.
pub(crate) fn order(
    deps: &BTreeMap<String, BTreeSet<String>>,
) -> Result<Vec<String>, TemplateError> {
    let mut waiting: BTreeMap<&str, usize> = BTreeMap::new();
    let mut dependents: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (id, ds) in deps {
        waiting.insert(id, ds.len());
        for d in ds {
            dependents.entry(d.as_str()).or_default().push(id);
        }
    }
    let mut ready: BTreeSet<&str> = waiting
        .iter()
        .filter(|(_, n)| **n == 0)
        .map(|(id, _)| *id)
        .collect();
    let mut out = Vec::with_capacity(deps.len());
    while let Some(id) = ready.pop_first() {
        out.push(id.to_owned());
        for d in dependents.get(id).map(Vec::as_slice).unwrap_or_default() {
            if let Some(n) = waiting.get_mut(d) {
                *n -= 1;
                if *n == 0 {
                    ready.insert(d);
                }
            }
        }
    }
    if out.len() == deps.len() {
        return Ok(out);
    }
    // The rest is on or after a cycle: peel off, repeatedly, those nothing left depends on.
    let placed: BTreeSet<&str> = out.iter().map(String::as_str).collect();
    let mut rest: BTreeSet<&str> = deps
        .keys()
        .map(String::as_str)
        .filter(|id| !placed.contains(id))
        .collect();
    loop {
        let leaves: Vec<&str> = rest
            .iter()
            .copied()
            .filter(|id| {
                !dependents
                    .get(id)
                    .is_some_and(|ds| ds.iter().any(|d| rest.contains(d)))
            })
            .collect();
        if leaves.is_empty() {
            break;
        }
        for l in leaves {
            rest.remove(l);
        }
    }
    Err(TemplateError::CircularDependency(
        rest.into_iter().map(str::to_owned).collect(),
    ))
}
