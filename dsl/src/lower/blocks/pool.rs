//! `pool NAME { ... }` blocks and their instances (`[N x hw]`).

use std::collections::BTreeMap;

use simctl_engine::spec::*;

use crate::value::{Val, ValKind};

use super::hardware::EngineOverrides;
use crate::lower::{Cx, VItem, closest};

/// Keys of a `pool` block.
pub(crate) const POOL_KEYS: &[&str] = &["role", "instances", "tp", "local_prefill", "local_prefill_threshold"];

/// Keys of an `instance` block.
pub(crate) const INSTANCE_KEYS: &[&str] = &["hardware", "tp"];

impl Cx {
    /// Lowers a pool. Its engine settings are, from strongest: its own `engine { }` block,
    /// the scenario's (`global`), the profile of the hardware it runs (`profile_engines`,
    /// by hardware index), vLLM's defaults.
    pub(crate) fn pool(
        &mut self,
        name: &str,
        items: &[VItem],
        global: &EngineOverrides,
        hw: &BTreeMap<String, usize>,
        profile_engines: &[Option<EngineSpec>],
    ) -> Option<PoolSpec> {
        let what = format!("pool `{name}`");
        let s = self.settings(&what, items, POOL_KEYS);
        for it in items {
            if let VItem::Block { kind, .. } = it
                && kind.name != "engine"
                && kind.name != "instance"
            {
                self.error(
                    0,
                    kind.span,
                    format!("unknown block `{}` in {what}", kind.name),
                    "unknown block",
                    Some("pools hold `engine { ... }` and `instance NAME { hardware = ... }` blocks".into()),
                );
            }
        }
        let role = match s.get("role") {
            Some(v) => self.keyword(v, "role", &[("prefill", Role::Prefill), ("decode", Role::Decode), ("mixed", Role::Mixed)])?,
            None => Role::Mixed,
        };
        let tp = s.get("tp").map_or(Some(1), |v| self.count_u32(v, "tp"))?;
        let own = match Self::blocks(items, "engine").next() {
            Some((_, _, e, _)) => self.engine_overrides(e),
            None => EngineOverrides::default(),
        };
        let mut instances = Vec::new();
        let hw_ref = |cx: &mut Self, n: &str, v: &Val| -> Option<usize> {
            hw.get(n).copied().or_else(|| {
                if cx.broken_hardware.contains(n) {
                    return None;
                }
                let names: Vec<&str> = hw.keys().map(String::as_str).collect();
                let help = closest(n, &names)
                    .map(|c| format!("did you mean `{c}`?"))
                    .unwrap_or_else(|| format!("hardware declared: {}", names.join(", ")));
                cx.error(v.src, v.span, format!("unknown hardware `{n}`"), "not declared", Some(help));
                None
            })
        };
        if let Some(v) = s.get("instances") {
            let elems: Vec<Val> = match &v.kind {
                ValKind::List(xs) => xs.clone(),
                _ => vec![(*v).clone()],
            };
            for e in elems {
                match &e.kind {
                    ValKind::Ident(n) | ValKind::Str(n) => {
                        if let Some(h) = hw_ref(self, n, &e) {
                            instances.push(InstanceSpec { name: n.clone(), hardware: h, tp });
                        }
                    }
                    ValKind::Replicate(k, n) => {
                        if let Some(h) = hw_ref(self, n, &e) {
                            for j in 0..*k {
                                // `3 x mid` -> mid0, mid1, mid2; a name ending in a digit gets a
                                // separator (`h200_0`).
                                let sep = if n.ends_with(|c: char| c.is_ascii_digit()) { "_" } else { "" };
                                let generated = format!("{n}{sep}{j}");
                                self.generated.insert(generated.clone());
                                instances.push(InstanceSpec { name: generated, hardware: h, tp });
                            }
                        }
                    }
                    _ => self.error(
                        e.src,
                        e.span,
                        format!("`instances` lists hardware names or `N x NAME`, found {e}"),
                        "not an instance",
                        Some("e.g. `instances = [dc_big, 3 x dc_mid]`".into()),
                    ),
                }
            }
        }
        for (_, iname, items, span) in Self::blocks(items, "instance") {
            let Some(iname) = iname else {
                self.error(
                    0,
                    span,
                    "an instance block needs a name".into(),
                    "unnamed",
                    Some("write `instance NAME { hardware = ... }`".into()),
                );
                continue;
            };
            let si = self.settings(&format!("instance `{}`", iname.name), items, INSTANCE_KEYS);
            let Some(hv) = si.get("hardware") else {
                self.error(
                    0,
                    span,
                    format!("instance `{}` names no hardware", iname.name),
                    "incomplete",
                    Some("add `hardware = NAME`".into()),
                );
                continue;
            };
            let Some(hn) = self.name(hv, "hardware") else {
                continue;
            };
            let Some(h) = hw_ref(self, &hn, hv) else {
                continue;
            };
            let itp = si.get("tp").map_or(Some(tp), |v| self.count_u32(v, "tp"));
            if let Some(itp) = itp {
                instances.push(InstanceSpec { name: iname.name.clone(), hardware: h, tp: itp });
            }
        }
        let local = match s.get("local_prefill") {
            Some(v) => self.boolean(v, "local_prefill")?,
            None => false,
        };
        let local_prefill_threshold = match s.get("local_prefill_threshold") {
            Some(v) => Some(self.count_u32(v, "local_prefill_threshold")?),
            None if local => Some(DEFAULT_LOCAL_PREFILL_THRESHOLD),
            None => None,
        };
        let mut profiled = instances.iter().filter_map(|i| profile_engines.get(i.hardware).copied().flatten());
        let base = profiled.next().unwrap_or_default();
        if profiled.any(|p| p != base) {
            self.error(
                0,
                self.spans.get(&format!("pools.{name}")).copied().unwrap_or_default(),
                format!("{what} runs hardware whose profiles were measured with different engine settings"),
                "which profile's settings apply is unclear",
                Some("give the pool an `engine { ... }` block, or put each profile's hardware in its own pool".into()),
            );
        }
        let engine = own.apply(global.apply(base));
        Some(PoolSpec { name: name.into(), role, engine, instances, local_prefill_threshold })
    }
}
