//! `model = NAME` and `model NAME { ... }` blocks.

use simctl_engine::catalogue::{self, NumberFormat};

use crate::ast::{Ident, Span};

use crate::lower::{Cx, VItem};

const FORMAT_HINT: &str = "number formats: bf16, fp8, nvfp4, mxfp4, int4, fp32";

/// Keys of a `model` block.
pub(crate) const MODEL_KEYS: &[&str] = &[
    "base",
    "layers",
    "hidden",
    "heads",
    "kv_heads",
    "head_dim",
    "intermediate",
    "vocab",
    "experts",
    "active_experts",
    "dtype_bytes",
    "tied_embeddings",
    "weights",
    "expert_weights",
    "kv_cache",
    "sliding_window",
    "sliding_window_layers",
];

impl Cx {
    /// `model NAME { base = CATALOGUE_MODEL; ... }` or a full architecture.
    pub(crate) fn model_block(&mut self, name: Option<&Ident>, items: &[VItem], span: Span) -> Option<catalogue::ModelSpec> {
        let s = self.settings("the model", items, MODEL_KEYS);
        let mut m = match s.get("base") {
            Some(v) => {
                let n = self.name(v, "base")?;
                match catalogue::model(&n) {
                    Some(m) => m,
                    None => {
                        let names: Vec<String> = catalogue::models().into_iter().map(|m| m.name).collect();
                        self.error(
                            v.src,
                            v.span,
                            format!("unknown model `{n}`"),
                            "not in the catalogue",
                            Some(format!("catalogue models: {}", names.join(", "))),
                        );
                        return None;
                    }
                }
            }
            None => {
                let missing: Vec<&str> =
                    ["layers", "hidden", "heads", "kv_heads", "intermediate", "vocab"].into_iter().filter(|k| !s.contains_key(k)).collect();
                if !missing.is_empty() {
                    self.error(
                        0,
                        span,
                        format!("the model block lacks {}", missing.join(", ")),
                        "incomplete architecture",
                        Some("give every shape, or start from the catalogue with `base = llama_3_1_8b`".into()),
                    );
                    return None;
                }
                catalogue::ModelSpec {
                    name: String::new(),
                    layers: 0,
                    hidden: 0,
                    heads: 0,
                    kv_heads: 0,
                    head_dim: 0,
                    intermediate: 0,
                    vocab: 0,
                    experts: 1,
                    active_experts: 1,
                    dtype_bytes: 2,
                    tied_embeddings: false,
                    weights: NumberFormat::Bf16,
                    expert_weights: NumberFormat::Bf16,
                    kv_cache: NumberFormat::Bf16,
                    sliding_window: None,
                }
            }
        };
        if let Some(n) = name {
            m.name = n.name.clone();
        }
        let set = |cx: &mut Self, k: &str, into: &mut u32| -> Option<()> {
            if let Some(v) = s.get(k) {
                *into = cx.count_u32(v, k)?;
                if *into == 0 {
                    cx.error(v.src, v.span, format!("`{k}` must be at least 1"), "zero", None);
                    return None;
                }
            }
            Some(())
        };
        set(self, "layers", &mut m.layers)?;
        set(self, "hidden", &mut m.hidden)?;
        set(self, "heads", &mut m.heads)?;
        set(self, "kv_heads", &mut m.kv_heads)?;
        set(self, "intermediate", &mut m.intermediate)?;
        set(self, "vocab", &mut m.vocab)?;
        set(self, "experts", &mut m.experts)?;
        set(self, "active_experts", &mut m.active_experts)?;
        set(self, "dtype_bytes", &mut m.dtype_bytes)?;
        if let Some(v) = s.get("dtype_bytes") {
            // `dtype_bytes` alone sets every format (the model's weights and KV in that width).
            let Some(f) = NumberFormat::of_bytes(m.dtype_bytes) else {
                self.error(v.src, v.span, "`dtype_bytes` must be 1, 2 or 4".into(), "no such format", Some(FORMAT_HINT.into()));
                return None;
            };
            (m.weights, m.expert_weights, m.kv_cache) = (f, f, f);
        }
        for (k, into) in [("weights", &mut m.weights), ("expert_weights", &mut m.expert_weights), ("kv_cache", &mut m.kv_cache)] {
            if let Some(v) = s.get(k) {
                let n = self.name(v, k)?;
                let Some(f) = NumberFormat::parse(&n) else {
                    self.error(v.src, v.span, format!("unknown number format `{n}`"), "not a format", Some(FORMAT_HINT.into()));
                    return None;
                };
                *into = f;
            }
        }
        if let Some(v) = s.get("sliding_window") {
            let window = self.count_u32(v, "sliding_window")?;
            let layers = match s.get("sliding_window_layers") {
                Some(l) => self.count_u32(l, "sliding_window_layers")?,
                None => m.sliding_window.map_or(m.layers, |(_, l)| l),
            };
            m.sliding_window = (window > 0 && layers > 0).then_some((window, layers.min(m.layers)));
        }
        if s.contains_key("head_dim") {
            set(self, "head_dim", &mut m.head_dim)?;
        } else if m.head_dim == 0 {
            m.head_dim = m.hidden / m.heads;
        }
        if let Some(v) = s.get("tied_embeddings") {
            m.tied_embeddings = self.boolean(v, "tied_embeddings")?;
        }
        if m.active_experts > m.experts {
            self.error(0, span, "`active_experts` exceeds `experts`".into(), "impossible", None);
            return None;
        }
        Some(m)
    }
}
