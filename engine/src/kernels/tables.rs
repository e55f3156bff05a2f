//! The shipped kernel tables: parsing, the registry by GPU and backend, and lookups.

use std::collections::HashMap;
use std::sync::OnceLock;

use super::curve::Curve;
use crate::catalogue::Backend;

/// The shipped files: `(AIConfigurator system, catalogue GPU, backend, text)`, made by
/// `tools/kernels/convert.py` (see `engine/kernels/README.md`).
const FILES: &[(&str, &str, &str, &str)] = &[
    ("a100_sxm", "a100-80gb", "sglang", include_str!("../../kernels/a100_sxm.sglang.tsv")),
    ("a100_sxm", "a100-80gb", "vllm", include_str!("../../kernels/a100_sxm.vllm.tsv")),
    ("b200_sxm", "b200", "sglang", include_str!("../../kernels/b200_sxm.sglang.tsv")),
    ("b200_sxm", "b200", "vllm", include_str!("../../kernels/b200_sxm.vllm.tsv")),
    ("b300_sxm", "b300", "sglang", include_str!("../../kernels/b300_sxm.sglang.tsv")),
    ("b300_sxm", "b300", "vllm", include_str!("../../kernels/b300_sxm.vllm.tsv")),
    ("gb200", "gb200", "sglang", include_str!("../../kernels/gb200.sglang.tsv")),
    ("gb200", "gb200", "vllm", include_str!("../../kernels/gb200.vllm.tsv")),
    ("gb300", "gb300", "sglang", include_str!("../../kernels/gb300.sglang.tsv")),
    ("gb300", "gb300", "vllm", include_str!("../../kernels/gb300.vllm.tsv")),
    ("h100_sxm", "h100-sxm", "sglang", include_str!("../../kernels/h100_sxm.sglang.tsv")),
    ("h100_sxm", "h100-sxm", "vllm", include_str!("../../kernels/h100_sxm.vllm.tsv")),
    ("h200_sxm", "h200", "sglang", include_str!("../../kernels/h200_sxm.sglang.tsv")),
    ("h200_sxm", "h200", "vllm", include_str!("../../kernels/h200_sxm.vllm.tsv")),
    ("l40s", "l40s", "sglang", include_str!("../../kernels/l40s.sglang.tsv")),
    ("l40s", "l40s", "vllm", include_str!("../../kernels/l40s.vllm.tsv")),
    ("rtx_pro_6000_server", "rtx-pro-6000", "sglang", include_str!("../../kernels/rtx_pro_6000_server.sglang.tsv")),
    ("rtx_pro_6000_server", "rtx-pro-6000", "vllm", include_str!("../../kernels/rtx_pro_6000_server.vllm.tsv")),
];

/// Which attention table a lookup reads: query heads, KV heads, head dim and sliding window
/// per GPU, and the KV cache's format.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct AttnKey {
    /// Query heads on one GPU.
    pub heads: u32,
    /// KV heads on one GPU.
    pub kv_heads: u32,
    /// Head dimension.
    pub head_dim: u32,
    /// Sliding window in tokens (0: full attention).
    pub window: u32,
    /// KV cache format as AIConfigurator names it (`bfloat16`, `fp8`).
    pub kv_dtype: String,
}

/// One MoE layer's measured shape: format, hidden size, expert intermediate size, experts
/// per token, experts, and the MoE tensor- and expert-parallel degrees.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MoeKey {
    /// Expert format as AIConfigurator names it (`bfloat16`, `fp8`, `nvfp4`, ...).
    pub dtype: String,
    /// Hidden size.
    pub hidden: u32,
    /// Intermediate size of one expert.
    pub inter: u32,
    /// Experts per token.
    pub topk: u32,
    /// Experts.
    pub experts: u32,
    /// MoE tensor parallelism.
    pub tp: u32,
    /// Expert parallelism.
    pub ep: u32,
}

/// A batch-by-length table: one curve over the length per measured batch size.
#[derive(Clone, Debug, Default)]
pub struct BatchTable {
    /// `(batch, latency in seconds over the length)`, by batch.
    pub rows: Vec<(f64, Curve)>,
}

/// Every measured table of one GPU under one serving engine (one version).
#[derive(Clone, Debug)]
pub struct KernelTables {
    /// AIConfigurator's name of the system (`h100_sxm`).
    pub system: String,
    /// The catalogue GPU (`h100-sxm`).
    pub gpu: String,
    /// The serving engine.
    pub backend: Backend,
    /// The engine version of the GEMM tables (the version the file stands for).
    pub version: String,
    /// The version each kind of table comes from (`gemm`, `ctx`, `gen`, `allreduce`, `moe`).
    pub versions: Vec<(String, String)>,
    /// Memory bandwidth (B/s), the fraction of it element-wise kernels reach and their fixed
    /// latency (s): AIConfigurator's system constants for kernels it has no table for.
    pub mem_bw: f64,
    /// See [`KernelTables::mem_bw`].
    pub mem_scaling: f64,
    /// See [`KernelTables::mem_bw`].
    pub mem_latency: f64,
    // The file, and where each record's series lies in it: a series is parsed when a
    // lookup reads it (an instance reads a few dozen of a file's thousands).
    text: String,
    gemm: HashMap<(String, u32, u32), Span>,
    gemm_axes: HashMap<String, (Vec<u32>, Vec<u32>)>,
    ctx: HashMap<AttnKey, Vec<(f64, Span)>>,
    gen_attn: HashMap<AttnKey, Vec<(f64, Span)>>,
    allreduce: Vec<(u32, Span)>,
    moe: HashMap<MoeKey, Span>,
}

type Span = std::ops::Range<usize>;

/// File `i`, parsed on first use (a run reads only the files of its GPUs and backends).
fn parsed(i: usize) -> &'static KernelTables {
    static PARSED: [OnceLock<KernelTables>; FILES.len()] = [const { OnceLock::new() }; FILES.len()];
    PARSED[i].get_or_init(|| {
        let (sys, _, b, text) = FILES[i];
        parse(text).unwrap_or_else(|e| panic!("shipped kernel table {sys}.{b}.tsv: {e}"))
    })
}

/// Every shipped table set (parses them all).
pub fn all() -> Vec<&'static KernelTables> {
    (0..FILES.len()).map(parsed).collect()
}

/// Every `(catalogue GPU, backend)` with tables (parses nothing).
pub fn shipped() -> impl Iterator<Item = (&'static str, Backend)> {
    FILES.iter().filter_map(|(_, g, b, _)| Some((*g, Backend::parse(b)?)))
}

/// Whether catalogue GPU `gpu` has tables under `backend` (parses nothing).
pub fn has_tables(gpu: &str, backend: Backend) -> bool {
    file_of(gpu, backend).is_some()
}

fn file_of(gpu: &str, backend: Backend) -> Option<usize> {
    let g = crate::catalogue::gpu(gpu)?;
    FILES.iter().position(|(_, name, b, _)| *name == g.name && Backend::parse(b) == Some(backend))
}

/// The tables of catalogue GPU `gpu` under `backend`, if shipped.
pub fn tables(gpu: &str, backend: Backend) -> Option<&'static KernelTables> {
    file_of(gpu, backend).map(parsed)
}

/// Parses one file of the shipped format (`engine/kernels/README.md`).
pub fn parse(text: &str) -> Result<KernelTables, String> {
    let mut t = KernelTables {
        system: String::new(),
        gpu: String::new(),
        backend: Backend::Vllm,
        version: String::new(),
        versions: Vec::new(),
        mem_bw: 0.0,
        mem_scaling: 1.0,
        mem_latency: 0.0,
        text: text.to_string(),
        gemm: HashMap::new(),
        gemm_axes: HashMap::new(),
        ctx: HashMap::new(),
        gen_attn: HashMap::new(),
        allreduce: Vec::new(),
        moe: HashMap::new(),
    };
    let mut backend = None;
    let origin = text.as_ptr() as usize;
    for (i, line) in text.lines().enumerate() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split('\t').collect();
        let at = |e: String| format!("line {}: {e}", i + 1);
        let num = |k: usize| -> Result<u32, String> {
            f.get(k).and_then(|s| s.parse().ok()).ok_or_else(|| at(format!("field {} is not a whole number", k + 1)))
        };
        let float = |k: usize| -> Result<f64, String> {
            f.get(k).and_then(|s| s.parse().ok()).ok_or_else(|| at(format!("field {} is not a number", k + 1)))
        };
        let text = |k: usize| -> Result<String, String> {
            f.get(k).map(|s| s.to_string()).ok_or_else(|| at(format!("field {} is missing", k + 1)))
        };
        // Where field k lies in the file; its syntax is checked when it is first read (every
        // shipped file's every series is, by a test).
        let curve = |k: usize| -> Result<Span, String> {
            let field = f.get(k).copied().filter(|x| !x.trim().is_empty()).ok_or_else(|| at("no series".into()))?;
            let start = field.as_ptr() as usize - origin;
            Ok(start..start + field.len())
        };
        match f[0] {
            "system" => {
                t.system = text(1)?;
                t.gpu = text(2)?;
            }
            "backend" => {
                backend = Backend::parse(&text(1)?);
                t.version = text(2)?;
            }
            "memory" => {
                t.mem_bw = float(1)?;
                t.mem_scaling = float(2)?;
                t.mem_latency = float(3)?;
            }
            "version" => t.versions.push((text(1)?, text(2)?)),
            "gemmaxes" => {
                let axis = |k: usize| -> Result<Vec<u32>, String> {
                    text(k)?.split(',').map(|s| s.parse().map_err(|_| at(format!("bad axis value `{s}`")))).collect()
                };
                t.gemm_axes.insert(text(1)?, (axis(2)?, axis(3)?));
            }
            "gemm" => {
                t.gemm.insert((text(1)?, num(2)?, num(3)?), curve(4)?);
            }
            "ctx" | "gen" => {
                let key = AttnKey { heads: num(1)?, kv_heads: num(2)?, head_dim: num(3)?, window: num(4)?, kv_dtype: text(5)? };
                let table = if f[0] == "ctx" { &mut t.ctx } else { &mut t.gen_attn };
                table.entry(key).or_default().push((f64::from(num(6)?), curve(7)?));
            }
            "allreduce" => t.allreduce.push((num(1)?, curve(2)?)),
            "moe" => {
                let key =
                    MoeKey { dtype: text(1)?, hidden: num(2)?, inter: num(3)?, topk: num(4)?, experts: num(5)?, tp: num(6)?, ep: num(7)? };
                t.moe.insert(key, curve(9)?);
            }
            other => return Err(at(format!("unknown record `{other}`"))),
        }
    }
    t.backend = backend.ok_or("no `backend` line")?;
    if t.gpu.is_empty() || t.mem_bw <= 0.0 {
        return Err("no `system` or `memory` line".into());
    }
    for table in t.ctx.values_mut().chain(t.gen_attn.values_mut()) {
        table.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    t.allreduce.sort_by_key(|(g, _)| *g);
    Ok(t)
}

/// `x:latency_us x:latency_us ...` into a curve in seconds.
fn series(s: &str) -> Result<Curve, String> {
    let mut pts = Vec::new();
    for p in s.split(' ').filter(|p| !p.is_empty()) {
        let (x, y) = p.split_once(':').ok_or_else(|| format!("`{p}` is not x:y"))?;
        let x: f64 = x.parse().map_err(|_| format!("`{x}` is not a number"))?;
        let y: f64 = y.parse().map_err(|_| format!("`{y}` is not a number"))?;
        if !(y.is_finite() && y >= 0.0 && x.is_finite()) {
            return Err(format!("`{p}` is not a finite, non-negative latency"));
        }
        pts.push((x, y * 1e-6));
    }
    if pts.is_empty() {
        return Err("no points".into());
    }
    Ok(Curve::new(pts))
}

impl KernelTables {
    /// The GEMM curve over `m` of shape `(n, k)` in `dtype`: bilinear between the measured
    /// `n` and `k` around it; `None` where a corner was not shipped or the format was not
    /// measured. The second value is the `(n, k)` the curve stands for (the shape clamped into
    /// the measured axes), for the caller's roofline ratio when they differ.
    pub fn gemm_curve(&self, dtype: &str, n: u32, k: u32) -> Option<(Curve, (u32, u32))> {
        let (ns, ks) = self.gemm_axes.get(dtype)?;
        let around = |axis: &[u32], v: u32| -> (u32, u32, f64, u32) {
            let v = v.clamp(axis[0], *axis.last().expect("non-empty axis"));
            let i = axis.partition_point(|&a| a < v);
            if axis[i] == v {
                return (v, v, 0.0, v);
            }
            let (lo, hi) = (axis[i - 1], axis[i]);
            (lo, hi, f64::from(v - lo) / f64::from(hi - lo), v)
        };
        let (n0, n1, fn_, nc) = around(ns, n);
        let (k0, k1, fk, kc) = around(ks, k);
        let g = |n, k| self.gemm.get(&(dtype.to_string(), n, k)).map(|s| self.curve(s));
        let (c00, c01, c10, c11) = (g(n0, k0)?, g(n0, k1)?, g(n1, k0)?, g(n1, k1)?);
        let w = [(1.0 - fn_) * (1.0 - fk), (1.0 - fn_) * fk, fn_ * (1.0 - fk), fn_ * fk];
        let mut out = Curve::default();
        for (c, w) in [c00, c01, c10, c11].into_iter().zip(w) {
            if w > 0.0 {
                out = out.plus(&c, w);
            }
        }
        Some((out, (nc, kc)))
    }

    /// The largest measured `n` and `k` of GEMMs in `dtype`.
    pub fn gemm_limits(&self, dtype: &str) -> Option<(u32, u32)> {
        let (ns, ks) = self.gemm_axes.get(dtype)?;
        Some((*ns.last()?, *ks.last()?))
    }

    /// The context (prefill) attention table of `key`.
    pub fn ctx(&self, key: &AttnKey) -> Option<BatchTable> {
        self.ctx.get(key).map(|rows| self.batch_table(rows))
    }

    fn batch_table(&self, rows: &[(f64, Span)]) -> BatchTable {
        BatchTable { rows: rows.iter().map(|(b, s)| (*b, self.curve(s))).collect() }
    }

    /// The series at `s` (checked syntax: a malformed shipped series fails a test, not a run).
    fn curve(&self, s: &Span) -> Curve {
        series(&self.text[s.clone()]).unwrap_or_else(|e| panic!("kernel table {}.{}: {e}", self.system, self.backend.as_str()))
    }

    /// Parses every series of the file: `Err` names the first malformed one.
    pub fn check_series(&self) -> Result<usize, String> {
        let spans = self.gemm.values().chain(self.moe.values()).chain(self.allreduce.iter().map(|(_, s)| s));
        let spans = spans.chain(self.ctx.values().chain(self.gen_attn.values()).flatten().map(|(_, s)| s));
        let mut n = 0;
        for s in spans {
            series(&self.text[s.clone()])?;
            n += 1;
        }
        Ok(n)
    }

    /// Every head shape with a context attention table.
    pub fn ctx_keys(&self) -> impl Iterator<Item = &AttnKey> {
        self.ctx.keys()
    }

    /// Every head shape with a generation attention table.
    pub fn gen_keys(&self) -> impl Iterator<Item = &AttnKey> {
        self.gen_attn.keys()
    }

    /// The generation (decode) attention table of `key`.
    pub fn gen_attn(&self, key: &AttnKey) -> Option<BatchTable> {
        self.gen_attn.get(key).map(|rows| self.batch_table(rows))
    }

    /// The all-reduce curve over the message's element count among `gpus` GPUs, or the nearest measured
    /// GPU count's (and that count).
    pub fn allreduce(&self, gpus: u32) -> Option<(Curve, u32)> {
        self.allreduce.iter().min_by_key(|(g, _)| g.abs_diff(gpus)).map(|(g, s)| (self.curve(s), *g))
    }

    /// The MoE curve over tokens of `key`.
    pub fn moe(&self, key: &MoeKey) -> Option<Curve> {
        self.moe.get(key).map(|s| self.curve(s))
    }

    /// Every MoE shape measured here.
    pub fn moe_keys(&self) -> impl Iterator<Item = &MoeKey> {
        self.moe.keys()
    }
}

impl BatchTable {
    /// Latency at `batch` sequences of length `len`: linear in the batch between measured
    /// batches and in the length along each; past the largest batch it grows in proportion
    /// to the batch, past the longest length with `grow(len / longest)` (the roofline's
    /// growth: quadratic for prefill attention, linear for decode).
    pub fn at(&self, batch: f64, len: f64, grow: fn(f64) -> f64) -> f64 {
        let rows = &self.rows;
        if rows.is_empty() {
            return 0.0;
        }
        let along = |c: &Curve| {
            let (y, xc) = c.clamped(len);
            if len > xc && xc > 0.0 { y * grow(len / xc) } else { y }
        };
        let (b_lo, b_hi) = (rows[0].0, rows[rows.len() - 1].0);
        let b = batch.clamp(b_lo, b_hi);
        let i = rows.partition_point(|(x, _)| *x < b).min(rows.len() - 1);
        let y = if rows[i].0 == b || i == 0 {
            along(&rows[i].1)
        } else {
            let (x0, x1) = (rows[i - 1].0, rows[i].0);
            let f = (b - x0) / (x1 - x0);
            along(&rows[i - 1].1) * (1.0 - f) + along(&rows[i].1) * f
        };
        if batch > b_hi { y * batch / b_hi } else { y }
    }

    /// The largest measured batch and the longest measured length.
    pub fn limits(&self) -> (f64, f64) {
        let b = self.rows.last().map_or(0.0, |r| r.0);
        let l = self.rows.iter().map(|r| r.1.range().1).fold(0.0, f64::max);
        (b, l)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shipped_file_parses_and_names_a_catalogue_gpu() {
        assert_eq!(all().len(), FILES.len());
        for (t, (_, gpu, b, _)) in all().into_iter().zip(FILES) {
            assert_eq!((t.gpu.as_str(), t.backend.as_str()), (*gpu, *b), "the registry names the file's own GPU and backend");
            assert!(crate::catalogue::gpu(&t.gpu).is_some(), "{} is not in the catalogue", t.gpu);
            assert!(!t.gemm.is_empty() && !t.ctx.is_empty() && !t.gen_attn.is_empty(), "{} {:?}", t.gpu, t.backend);
            assert!(t.mem_bw > 0.0 && t.mem_scaling > 0.0 && t.mem_scaling <= 1.0);
            let n = t.check_series().unwrap_or_else(|e| panic!("{} {:?}: {e}", t.gpu, t.backend));
            assert!(n > 100, "{} {:?}: {n} series", t.gpu, t.backend);
        }
        assert!(tables("h100-sxm", Backend::Vllm).is_some());
        assert!(tables("h100_sxm", Backend::Sglang).is_some());
        assert!(tables("h100-mig-1g", Backend::Vllm).is_none());
    }

    #[test]
    fn no_shipped_prefill_attention_is_faster_than_its_gpu_can_compute_it() {
        // Causal attention does 4 x head_dim FLOPs per (query, key) pair per head (QK^T and
        // PV); a measured point that takes less time than the GPU's peak tensor rate needs is
        // a broken collection (vLLM 0.19.0's on H200 timed 8,192-token prompts 11-32x faster
        // than 989 TFLOPS allow), which the converter passes over for another version.
        for t in all() {
            let gpu = crate::catalogue::gpu(&t.gpu).expect("catalogue GPU");
            for (key, rows) in &t.ctx {
                use crate::catalogue::NumberFormat;
                let f = if key.kv_dtype == "fp8" { NumberFormat::Fp8 } else { NumberFormat::Bf16 };
                let peak = gpu.peak_for(f);
                for (batch, span) in rows {
                    let c = t.curve(span);
                    for &s in c.xs() {
                        let w = f64::from(key.window);
                        let pairs = if key.window == 0 || s <= w { s * s / 2.0 } else { s * w - w * w / 2.0 };
                        let flops = 4.0 * batch * pairs * f64::from(key.head_dim) * f64::from(key.heads);
                        let least = flops / peak;
                        assert!(
                            c.at(s) >= least,
                            "{} {:?} {key:?} batch {batch} length {s}: {:.1} µs, the peak needs {:.1}",
                            t.gpu,
                            t.backend,
                            c.at(s) * 1e6,
                            least * 1e6
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn a_gemm_between_measured_shapes_is_bilinear_and_exact_on_them() {
        let text = "system\ts\th100-sxm\nbackend\tvllm\t1\nmemory\t1e12\t0.8\t3e-6\n\
                    gemmaxes\tbfloat16\t100,200\t10,20\n\
                    gemm\tbfloat16\t100\t10\t1:10 2:20\ngemm\tbfloat16\t100\t20\t1:20 2:40\n\
                    gemm\tbfloat16\t200\t10\t1:30 2:60\ngemm\tbfloat16\t200\t20\t1:40 2:80\n\
                    ctx\t1\t1\t64\t0\tbfloat16\t1\t1:1\ngen\t1\t1\t64\t0\tbfloat16\t1\t1:1\n";
        let t = parse(text).unwrap();
        let (c, at) = t.gemm_curve("bfloat16", 100, 20).unwrap();
        assert_eq!(at, (100, 20));
        assert!((c.at(1.0) - 20e-6).abs() < 1e-15);
        let (c, _) = t.gemm_curve("bfloat16", 150, 15).unwrap();
        // The mean of the four corners at m = 1: (10 + 20 + 30 + 40) / 4 = 25 µs.
        assert!((c.at(1.0) - 25e-6).abs() < 1e-15, "{}", c.at(1.0));
        let (_, at) = t.gemm_curve("bfloat16", 1000, 5).unwrap();
        assert_eq!(at, (200, 10), "clamped into the measured axes");
        assert!(t.gemm_curve("fp8", 100, 10).is_none());
    }

    #[test]
    fn batch_tables_interpolate_in_batch_and_scale_past_it() {
        let t =
            BatchTable { rows: vec![(1.0, Curve::new(vec![(10.0, 1.0), (20.0, 2.0)])), (3.0, Curve::new(vec![(10.0, 3.0), (20.0, 6.0)]))] };
        assert_eq!(t.at(1.0, 10.0, |r| r), 1.0);
        assert_eq!(t.at(2.0, 10.0, |r| r), 2.0);
        assert_eq!(t.at(6.0, 20.0, |r| r), 12.0, "twice the largest batch");
        assert_eq!(t.at(1.0, 40.0, |r| r * r), 8.0, "quadratic growth past the longest length");
    }
}
