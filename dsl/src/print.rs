//! Canonical form: a lowered scenario printed back as a `.scn` file that lowers to the same
//! spec. Every value is written out (no defaults, no parameters), in base units chosen so
//! that numbers survive the round trip exactly: durations in `ns`, sizes in `B`,
//! bandwidths in `B/s`, prices in `$/h`.

use std::fmt::Write;

use simctl_engine::spec::*;
use simctl_engine::time::SimDuration;

fn ns(d: SimDuration) -> String {
    format!("{}ns", d.as_nanos())
}

fn q(s: &str) -> String {
    format!("\"{s}\"")
}

fn length(l: &LengthSpec) -> String {
    match l {
        LengthSpec::Constant(n) => n.to_string(),
        LengthSpec::Uniform { lo, hi } => format!("uniform({lo}, {hi})"),
        LengthSpec::Exponential { mean } => format!("exponential({mean})"),
        LengthSpec::Normal { mean, std } => format!("normal({mean}, {std})"),
        LengthSpec::LogNormal { mean, std } => format!("lognormal({mean}, {std})"),
        // The file is not kept in the spec: the values are printed by their count only.
        LengthSpec::Empirical(v) => format!("constant({}) # empirical lengths ({} values) cannot be printed", v[0], v.len()),
        LengthSpec::Clamped { inner, min, max } => {
            let i = length(inner);
            let open = i.strip_suffix(')').unwrap_or(&i).to_string();
            format!("{open}, min = {min}, max = {max})")
        }
    }
}

fn priority((lo, hi): (u8, u8)) -> String {
    if lo == hi { lo.to_string() } else { format!("uniform({lo}, {hi})") }
}

fn slo(o: &mut String, indent: &str, s: &SloSpec) {
    let mut parts = Vec::new();
    for (k, v) in [("ttft", s.ttft), ("tpot", s.tpot), ("e2e", s.e2e), ("itl", s.itl), ("max_itl", s.max_itl)] {
        if let Some(d) = v {
            parts.push(format!("{k} = {}", ns(d)));
        }
    }
    let _ = writeln!(o, "{indent}slo {{ {} }}", parts.join("; "));
}

fn policy_params(p: &PolicySpec) -> Vec<String> {
    match p {
        PolicySpec::Telemetry(t) => vec![
            format!("ewma_alpha = {}", t.ewma_alpha),
            format!("queue_urgency = {}", t.queue_urgency),
            format!("kv_locality_boost = {}", t.kv_locality_boost),
            format!("decode_cost_penalty = {}", t.decode_cost_penalty),
            format!("migration = {}", t.migration),
            format!("migration_interval = {}", ns(t.migration_interval)),
            format!("min_score_gap = {}", t.min_score_gap),
            format!("budget = {}", t.budget),
            format!("window = {}", ns(t.window)),
            format!("max_per_call = {}", t.max_per_call),
        ],
        PolicySpec::KvAware(k) => {
            vec![format!("prefill_load_scale = {}", k.prefill_load_scale), format!("temperature = {}", k.temperature)]
        }
        PolicySpec::CacheAware(c) => {
            vec![
                format!("cache_threshold = {}", c.cache_threshold),
                format!("balance_abs = {}", c.balance_abs),
                format!("balance_rel = {}", c.balance_rel),
            ]
        }
        _ => vec![],
    }
}

/// Prints `spec` in canonical form.
pub fn print(spec: &ScenarioSpec) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "# canonical form printed by simctl check --print\nname = {}\nseed = {}\n", q(&spec.name), spec.seed);
    let m = &spec.model;
    let _ = writeln!(
        o,
        "model {} {{\n  layers = {}; hidden = {}; heads = {}; kv_heads = {}; head_dim = {}\n  intermediate = {}; vocab = {}; experts = {}; active_experts = {}\n  dtype_bytes = {}; tied_embeddings = {}\n  weights = {}; expert_weights = {}; kv_cache = {}{}\n}}\n",
        q(&m.name),
        m.layers,
        m.hidden,
        m.heads,
        m.kv_heads,
        m.head_dim,
        m.intermediate,
        m.vocab,
        m.experts,
        m.active_experts,
        m.dtype_bytes,
        m.tied_embeddings,
        m.weights.as_str(),
        m.expert_weights.as_str(),
        m.kv_cache.as_str(),
        m.sliding_window.map_or(String::new(), |(w, l)| format!("\n  sliding_window = {w}; sliding_window_layers = {l}"))
    );
    for h in &spec.hardware {
        let _ = writeln!(o, "hardware {} {{", h.name);
        match &h.perf {
            PerfSpec::Rates { prefill_tok_s, decode_tok_s, step_overhead } => {
                let _ = writeln!(
                    o,
                    "  prefill_rate = {prefill_tok_s} tok/s\n  decode_rate = {decode_tok_s} tok/s\n  step_overhead = {}",
                    ns(*step_overhead)
                );
            }
            PerfSpec::Roofline { gpu, params: p } => {
                let _ = writeln!(
                    o,
                    "  gpu = {}\n  mfu = {}\n  mbu = {}\n  step_overhead = {}\n  seq_overhead = {}\n  layer_overhead = {}\n  moe_efficiency = {}\n  moe_efficiency_fp4 = {}\n  frontend = {}",
                    q(&gpu.name),
                    p.mfu,
                    p.mbu,
                    ns(p.step_overhead),
                    ns(p.seq_overhead),
                    ns(p.layer_overhead),
                    p.moe_efficiency,
                    p.moe_efficiency_fp4,
                    ns(p.frontend)
                );
            }
            PerfSpec::Kernels { gpu, backend, overheads, expert_parallel } => {
                let _ = writeln!(
                    o,
                    "  gpu = {}\n  backend = {}\n  perf_model = kernels\n  step_overhead = {}\n  layer_overhead = {}\n  seq_overhead = {}\n  prefill_layer_overhead = {}\n  prefill_moe_layer_overhead = {}\n  expert_parallel = {expert_parallel}",
                    q(&gpu.name),
                    backend.as_str(),
                    ns(overheads.step),
                    ns(overheads.per_layer),
                    ns(overheads.per_seq),
                    ns(overheads.prefill_per_layer),
                    ns(overheads.prefill_per_moe_layer)
                );
            }
            PerfSpec::Fitted { cost, tp } => {
                let c: Vec<String> = cost.c.iter().map(|x| x.to_string()).collect();
                let _ = writeln!(o, "  fitted = [{}]", c.join(", "));
                if cost.frontend > SimDuration::ZERO {
                    let _ = writeln!(o, "  frontend = {}", ns(cost.frontend));
                }
                if let Some(c6) = cost.cached_context {
                    let _ = writeln!(o, "  cached_context = {c6}");
                }
                if let Some(tp) = tp {
                    let _ = writeln!(o, "  calibrated_tp = {tp}");
                }
            }
        }
        let _ = writeln!(o, "  cost = {} $/h", h.cost_per_hour);
        if let Some(b) = h.memory_bytes {
            let _ = writeln!(o, "  memory = {b} B");
        }
        if let Some(t) = h.kv_capacity_tokens {
            let _ = writeln!(o, "  kv_capacity = {t} tok");
        }
        if let Some(d) = h.kv_transfer_latency {
            let _ = writeln!(o, "  kv_transfer = {}", ns(d));
        }
        let _ = writeln!(o, "}}\n");
    }
    for p in &spec.pools {
        let e = &p.engine;
        let _ = writeln!(o, "pool {} {{\n  role = {}", p.name, p.role.as_str());
        if let Some(t) = p.local_prefill_threshold {
            let _ = writeln!(o, "  local_prefill_threshold = {t}");
        }
        // The scheduler shows only where it is not the default (it follows the backend).
        let scheduler = match e.scheduler {
            Scheduler::Auto => String::new(),
            s => format!("; scheduler = {}", s.as_str()),
        };
        let _ = writeln!(
            o,
            "  engine {{ max_batch_tokens = {}; max_seqs = {}; chunked_prefill = {}; block_size = {}; gpu_memory_utilization = {}; prefix_caching = {}{scheduler} }}",
            e.max_batch_tokens, e.max_seqs, e.chunked_prefill, e.block_size, e.gpu_memory_utilization, e.prefix_caching
        );
        for i in &p.instances {
            let _ = writeln!(o, "  instance {} {{ hardware = {}; tp = {} }}", i.name, spec.hardware[i.hardware].name, i.tp);
        }
        let _ = writeln!(o, "}}\n");
    }
    for l in &spec.links {
        let bw = l.bandwidth_bytes_s.map(|b| format!("; bandwidth = {b} B/s")).unwrap_or_default();
        let _ =
            writeln!(o, "link {{ from = {}; to = {}; latency = {}{bw} }}", spec.pools[l.from].name, spec.pools[l.to].name, ns(l.latency));
    }
    let mut r = vec![];
    match &spec.router.decode {
        None => r.push(format!("policy = {}", spec.router.prefill.name())),
        Some(d) => {
            r.push(format!("prefill = {}", spec.router.prefill.name()));
            r.push(format!("decode = {}", d.name()));
        }
    }
    r.extend(policy_params(&spec.router.prefill));
    if let Some(d) = &spec.router.decode
        && d.name() != spec.router.prefill.name()
    {
        r.extend(policy_params(d));
    }
    if let Some(sp) = &spec.router.split {
        r.push(format!("split_at = {}", sp.at));
        r.push(format!("long_pool = {}", spec.pools[sp.long_pool].name));
        r.push(format!("short_pool = {}", spec.pools[sp.short_pool].name));
    }
    let _ = writeln!(o, "\nrouter {{\n  {}\n}}\n", r.join("\n  "));
    let _ = writeln!(o, "telemetry {{ interval = {} }}\n", ns(spec.telemetry.interval));

    let w = &spec.workload;
    let arrivals = match (&w.trace, &w.arrivals) {
        (Some(t), _) => {
            let mut a = format!(
                "trace({}, format = {}, speedup = {}, start = {}ns, loop = {}, skip_invalid = {}, block_tokens = {}",
                q(&t.path.display().to_string()),
                t.format.as_str(),
                t.speedup,
                t.start_ns,
                t.looped,
                t.skip_invalid,
                t.block_tokens
            );
            if let Some(e) = t.end_ns {
                let _ = write!(a, ", end = {e}ns");
            }
            if let Some(n) = t.limit {
                let _ = write!(a, ", limit = {n}");
            }
            if let Some(n) = t.max_prompt {
                let _ = write!(a, ", max_prompt = {n}");
            }
            if let Some(n) = t.max_output {
                let _ = write!(a, ", max_output = {n}");
            }
            a + ")"
        }
        (None, ArrivalSpec::Poisson { rate_per_s, burst: None }) => format!("poisson({rate_per_s}/s)"),
        (None, ArrivalSpec::Poisson { rate_per_s, burst: Some(b) }) => {
            format!(
                "poisson({rate_per_s}/s, burst_factor = {}, burst_probability = {}, burst_window = {})",
                b.factor,
                b.probability,
                ns(b.window)
            )
        }
        (None, ArrivalSpec::Constant { rate_per_s }) => format!("constant({rate_per_s}/s)"),
        (None, ArrivalSpec::Gamma { rate_per_s, cv }) => format!("gamma({rate_per_s}/s, cv = {cv})"),
        (None, ArrivalSpec::Mmpp { rates, dwell }) => {
            format!("mmpp(low = {}/s, high = {}/s, low_for = {}, high_for = {})", rates[0], rates[1], ns(dwell[0]), ns(dwell[1]))
        }
        (None, ArrivalSpec::Ramp { points }) => {
            let p: Vec<String> = points.iter().map(|(t, r)| format!("[{}, {r}/s]", ns(*t))).collect();
            format!("ramp({})", p.join(", "))
        }
        (None, ArrivalSpec::ClosedLoop { users, think }) => format!("closed_loop(users = {users}, think = {})", ns(*think)),
    };
    let _ = writeln!(
        o,
        "workload {{\n  arrivals = {arrivals}\n  prompt = {}\n  output = {}\n  priority = {}",
        length(&w.prompt),
        length(&w.output),
        priority(w.priority)
    );
    if let Some(p) = w.prefix {
        let _ = writeln!(o, "  prefix = shared(groups = {}, tokens = {})", p.groups, p.tokens);
    }
    for c in &w.classes {
        let _ = writeln!(
            o,
            "  class {} {{\n    weight = {}\n    prompt = {}\n    output = {}\n    priority = {}",
            c.name,
            c.weight,
            length(&c.prompt),
            length(&c.output),
            priority(c.priority)
        );
        if let Some(p) = c.prefix {
            let _ = writeln!(o, "    prefix = shared(groups = {}, tokens = {})", p.groups, p.tokens);
        }
        if let Some(s) = &c.slo {
            slo(&mut o, "    ", s);
        }
        let _ = writeln!(o, "  }}");
    }
    let _ = writeln!(o, "}}\n");
    slo(&mut o, "", &spec.slo);
    let mut run = vec![format!("drain = {}", spec.run.drain)];
    if let Some(d) = spec.run.duration {
        run.push(format!("duration = {}", ns(d)));
    }
    if let Some(n) = spec.run.requests {
        run.push(format!("requests = {n}"));
    }
    if spec.run.max_in_flight != simctl_engine::spec::DEFAULT_MAX_IN_FLIGHT {
        run.push(format!("max_in_flight = {}", spec.run.max_in_flight));
    }
    if !spec.run.fast_forward {
        run.push("fast_forward = false".into());
    }
    if spec.run.max_time != simctl_engine::spec::DEFAULT_MAX_TIME {
        run.push(format!("max_time = {}", ns(spec.run.max_time)));
    }
    let _ = writeln!(o, "run {{ {} }}", run.join("; "));
    if let Some(s) = &spec.sweep {
        let g: Vec<String> = s.grid.iter().map(|x| q(x)).collect();
        let _ = write!(o, "\nsweep {{ grid = [{}]", g.join(", "));
        if let Some(n) = s.seeds {
            let _ = write!(o, "; seeds = {n}");
        }
        let _ = writeln!(o, " }}");
    }
    o
}
