//! `router { ... }` and the policy families' parameters.

use std::collections::BTreeMap;

use simctl_engine::spec::*;

use crate::value::Val;

use crate::lower::{Cx, VItem};

/// The router's own keys (besides its policies' parameters).
pub(crate) const ROUTER_KEYS: &[&str] = &["policy", "prefill", "decode", "split_at", "long_pool", "short_pool"];
/// Which keys belong to which policy (a key must belong to a chosen policy).
pub(crate) const ROUTER_PARAMS: &[(&str, &[&str])] = &[
    (
        "telemetry",
        &[
            "ewma_alpha",
            "queue_urgency",
            "kv_locality_boost",
            "decode_cost_penalty",
            "migration",
            "migration_interval",
            "min_score_gap",
            "budget",
            "window",
            "max_per_call",
        ],
    ),
    ("kv_aware", &["prefill_load_scale", "temperature"]),
    ("cache_aware", &["cache_threshold", "balance_abs", "balance_rel"]),
];
const POLICIES: &[&str] = &["round_robin", "random", "least_loaded", "power_of_two", "telemetry", "kv_aware", "cache_aware"];

impl Cx {
    pub(crate) fn router(&mut self, items: &[VItem], pools: &BTreeMap<String, usize>) -> Option<RouterSpec> {
        let mut allowed = ROUTER_KEYS.to_vec();
        for (_, keys) in ROUTER_PARAMS {
            allowed.extend_from_slice(keys);
        }
        let s = self.settings("router", items, &allowed);
        let opts: Vec<(&str, &str)> = POLICIES.iter().map(|p| (*p, *p)).collect();
        let pick = |cx: &mut Self, key: &str| -> Option<Option<(&'static str, bool)>> {
            match s.get(key) {
                None => Some(None),
                Some(v) => {
                    let name = cx.keyword(v, key, &opts)?;
                    let name = POLICIES.iter().find(|p| **p == name).copied().expect("a listed policy");
                    Some(Some((name, v.src != 0)))
                }
            }
        };
        let single = pick(self, "policy")?;
        let prefill = pick(self, "prefill")?;
        let decode = pick(self, "decode")?;
        if single.is_some() && (prefill.is_some() || decode.is_some()) {
            let v = s.get("prefill").or(s.get("decode")).expect("one is set");
            self.error(
                v.src,
                v.span,
                "`policy` sets both phases; it cannot be combined with `prefill` or `decode`".into(),
                "conflicts with `policy`",
                Some("use `policy = X` for both phases, or `prefill = X` and `decode = Y`".into()),
            );
            return None;
        }
        let prefill_name = single.or(prefill).unwrap_or(("round_robin", false));
        let decode_name = if single.is_some() { None } else { decode };
        // Policies switched from the command line leave the file's parameters of other
        // policies unused rather than in error, so one scenario compares policies.
        let switched = [Some(prefill_name), decode_name].iter().flatten().any(|(_, from_cli)| *from_cli);
        let chosen: Vec<&str> = [Some(prefill_name.0), decode_name.map(|d| d.0)].into_iter().flatten().collect();
        for (policy, keys) in ROUTER_PARAMS {
            if chosen.contains(policy) {
                continue;
            }
            for k in *keys {
                if let Some(v) = s.get(k).filter(|v| !switched || v.src != 0) {
                    self.error(
                        v.src,
                        v.span,
                        format!(
                            "`{k}` is a parameter of the `{policy}` policy, which this router does not use (it uses {})",
                            chosen.join(" and ")
                        ),
                        "not used by this router",
                        Some(format!("remove it, or choose `{policy}`")),
                    );
                }
            }
        }
        let prefill_spec = self.policy_spec(prefill_name.0, &s)?;
        let decode_spec = match decode_name {
            Some((d, _)) => Some(self.policy_spec(d, &s)?),
            None => None,
        };
        let split = self.prompt_split(&s, pools)?;
        Some(RouterSpec { prefill: prefill_spec, decode: decode_spec, split })
    }

    /// `split_at = N` with `long_pool = A` and `short_pool = B`: the original lab's dual pools.
    fn prompt_split(&mut self, s: &BTreeMap<&str, &Val>, pools: &BTreeMap<String, usize>) -> Option<Option<PromptSplit>> {
        let keys = ["split_at", "long_pool", "short_pool"];
        let given: Vec<&str> = keys.iter().copied().filter(|k| s.contains_key(k)).collect();
        if given.is_empty() {
            return Some(None);
        }
        if given.len() < keys.len() {
            let v = s[given[0]];
            let missing: Vec<String> = keys.iter().filter(|k| !given.contains(k)).map(|k| format!("`{k}`")).collect();
            self.error(
                v.src,
                v.span,
                format!("a split by prompt length needs `split_at`, `long_pool` and `short_pool`; {} missing", missing.join(" and ")),
                "incomplete split",
                Some("e.g. `split_at = 2048`, `long_pool = prefill`, `short_pool = decode`".into()),
            );
            return None;
        }
        let at = self.count_u32(s["split_at"], "split_at")?;
        let pool = |cx: &mut Self, key: &str| -> Option<usize> {
            let v = s[key];
            let n = cx.name(v, key)?;
            pools.get(&n).copied().or_else(|| {
                let names: Vec<&str> = pools.keys().map(String::as_str).collect();
                let help = crate::lower::closest(&n, &names)
                    .map(|c| format!("did you mean `{c}`?"))
                    .unwrap_or_else(|| format!("pools: {}", names.join(", ")));
                cx.error(v.src, v.span, format!("unknown pool `{n}`"), "no such pool", Some(help));
                None
            })
        };
        let long_pool = pool(self, "long_pool")?;
        let short_pool = pool(self, "short_pool")?;
        if long_pool == short_pool {
            let v = s["short_pool"];
            self.error(
                v.src,
                v.span,
                "`long_pool` and `short_pool` name the same pool".into(),
                "same pool",
                Some("name two pools, or remove the split to let every instance take every request".into()),
            );
            return None;
        }
        // `split_at = 0` turns the split off (`--set router.split_at=0`: shared pools).
        Some((at > 0).then_some(PromptSplit { at, long_pool, short_pool }))
    }

    pub(crate) fn policy_spec(&mut self, name: &str, s: &BTreeMap<&str, &Val>) -> Option<PolicySpec> {
        let num = |cx: &mut Self, k: &str, into: &mut f64| -> Option<()> {
            if let Some(v) = s.get(k) {
                *into = cx.number(v, k)?;
            }
            Some(())
        };
        Some(match name {
            "random" => PolicySpec::Random,
            "least_loaded" => PolicySpec::LeastLoaded,
            "power_of_two" => PolicySpec::PowerOfTwo,
            "telemetry" => {
                let mut t = TelemetryPolicySpec::default();
                num(self, "ewma_alpha", &mut t.ewma_alpha)?;
                num(self, "queue_urgency", &mut t.queue_urgency)?;
                num(self, "kv_locality_boost", &mut t.kv_locality_boost)?;
                num(self, "decode_cost_penalty", &mut t.decode_cost_penalty)?;
                num(self, "min_score_gap", &mut t.min_score_gap)?;
                if let Some(v) = s.get("migration") {
                    t.migration = self.boolean(v, "migration")?;
                }
                if let Some(v) = s.get("migration_interval") {
                    t.migration_interval = self.duration(v, "migration_interval")?;
                }
                if let Some(v) = s.get("window") {
                    t.window = self.duration(v, "window")?;
                }
                if let Some(v) = s.get("budget") {
                    t.budget = self.count_u32(v, "budget")?;
                }
                if let Some(v) = s.get("max_per_call") {
                    t.max_per_call = self.count_u32(v, "max_per_call")?;
                }
                PolicySpec::Telemetry(t)
            }
            "kv_aware" => {
                let mut k = KvAwarePolicySpec::default();
                num(self, "prefill_load_scale", &mut k.prefill_load_scale)?;
                num(self, "temperature", &mut k.temperature)?;
                PolicySpec::KvAware(k)
            }
            "cache_aware" => {
                let mut c = CacheAwarePolicySpec::default();
                num(self, "cache_threshold", &mut c.cache_threshold)?;
                num(self, "balance_abs", &mut c.balance_abs)?;
                num(self, "balance_rel", &mut c.balance_rel)?;
                PolicySpec::CacheAware(c)
            }
            _ => PolicySpec::RoundRobin,
        })
    }
}
