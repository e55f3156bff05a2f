//! `--set NAME=VALUE` overrides: a dotted path into the evaluated items.

use crate::ast::Ident;
use crate::value::Val;

use super::VItem;

// Blocks that take no name and have defaults for every key.
const UNNAMED_BLOCKS: &[&str] = &["engine", "router", "telemetry", "slo", "run"];

pub(super) fn set_path(items: &mut Vec<VItem>, path: &[&str], v: Val, top: bool) -> bool {
    match path {
        [] => false,
        [key] => {
            for it in items.iter_mut() {
                if let VItem::Setting { key: k, value } = it
                    && k.name == *key
                {
                    *value = v;
                    return true;
                }
            }
            // A key the file does not set: added, so `--set router.queue_urgency=2` works;
            // the unknown-key check then catches typos. At the top level only the
            // scenario's own settings qualify (a bare unknown name is a missing parameter).
            if top && !["name", "seed", "model"].contains(key) {
                return false;
            }
            items.push(VItem::Setting { key: Ident { name: key.to_string(), span: v.span }, value: v });
            true
        }
        [seg, rest @ ..] => {
            for it in items.iter_mut() {
                if let VItem::Block { kind, name, items: inner, .. } = it {
                    let kind_match = kind.name == *seg || format!("{}s", kind.name) == *seg;
                    if name.as_ref().is_some_and(|n| n.name == *seg) {
                        return set_path(inner, rest, v, false);
                    }
                    if kind_match && name.is_none() {
                        return set_path(inner, rest, v, false);
                    }
                    if kind_match
                        && let (Some(n), Some(next)) = (name.as_ref(), rest.first())
                        && n.name == *next
                    {
                        return set_path(inner, &rest[1..], v, false);
                    }
                }
            }
            // Unnamed blocks with defaults may be absent from the file: create them, so
            // `--set pool.decode.engine.max_seqs=64` works on a pool without an engine block.
            if UNNAMED_BLOCKS.contains(seg) && (top || *seg == "engine") {
                let kind = Ident { name: seg.to_string(), span: v.span };
                let span = v.span;
                let mut inner = Vec::new();
                let ok = set_path(&mut inner, rest, v, false);
                items.push(VItem::Block { kind, name: None, items: inner, span });
                return ok;
            }
            false
        }
    }
}

/// Settings of a hardware block that choose its performance model.
const PERF_KEYS: &[&str] =
    &["prefill_rate", "decode_rate", "profile", "fitted", "frontend", "calibrated_tp", "mfu", "mbu", "step_overhead"];

/// Removes the performance-model settings of hardware `name`, before `--set hardware.NAME.profile`
/// puts a profile in their place (a `gpu` stays, to price the hardware).
pub(super) fn clear_perf(items: &mut [VItem], name: &str) {
    for it in items.iter_mut() {
        if let VItem::Block { kind, name: Some(n), items: inner, .. } = it
            && kind.name == "hardware"
            && n.name == name
        {
            inner.retain(|i| !matches!(i, VItem::Setting { key, .. } if PERF_KEYS.contains(&key.name.as_str())));
        }
    }
}
