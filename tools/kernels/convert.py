#!/usr/bin/env python3
"""Converts NVIDIA AIConfigurator's measured kernel tables into simctl's shipped format.

Source: github.com/ai-dynamo/aiconfigurator (Apache-2.0), pinned to SOURCE_COMMIT below,
directory aic-core/src/aiconfigurator_core/systems/data/<system>/<op>/<backend>/<version>/.
Only what the catalogue's models and number formats need is kept (see `needed_shapes`):
GEMMs at the n and k grid points around every layer shape at TP 1, 2, 4 and 8; attention at
the heads, KV heads and head dims of those models; MoE at their expert shapes; all-reduce.

Usage (needs pyarrow; the default build of simctl does not):
    python3 tools/kernels/convert.py AIC_CHECKOUT [OUT_DIR]
AIC_CHECKOUT is a checkout of the repository at SOURCE_COMMIT (its `git rev-parse HEAD` is
checked); OUT_DIR defaults to engine/kernels. Output: one text file per system and backend,
`<system>.<backend>.tsv`, documented in engine/kernels/README.md. Rerunning on the same
commit gives the same bytes.
"""
import math
import os
import subprocess
import sys

import pyarrow.parquet as pq

SOURCE_COMMIT = "095f58a51c4ca8e61b66ec108d86f223f8d559ce"
DATA = "aic-core/src/aiconfigurator_core/systems/data"

# AIConfigurator system -> catalogue GPU name.
SYSTEMS = {
    "h100_sxm": "h100-sxm",
    "h200_sxm": "h200",
    "b200_sxm": "b200",
    "b300_sxm": "b300",
    "gb200": "gb200",
    "gb300": "gb300",
    "a100_sxm": "a100-80gb",
    "l40s": "l40s",
    "rtx_pro_6000_server": "rtx-pro-6000",
}
# The version of each backend shipped: the one nearest to what the public serving
# measurements ran (vLLM 0.15-0.19, SGLang 0.5.6-0.5.10); per op, the nearest measured
# version where the preferred one lacks that table.
PREFERRED = {"vllm": "0.19.0", "sglang": "0.5.9"}

# (name, layers, hidden, heads, kv_heads, head_dim, intermediate, vocab, experts, active,
#  sliding window) — the catalogue's models (engine/src/catalogue.rs).
MODELS = [
    ("llama-3.1-8b", 32, 4096, 32, 8, 128, 14336, 128256, 1, 1, 0),
    ("llama-3.1-70b", 80, 8192, 64, 8, 128, 28672, 128256, 1, 1, 0),
    ("llama-3.1-405b", 126, 16384, 128, 8, 128, 53248, 128256, 1, 1, 0),
    ("qwen3-32b", 64, 5120, 64, 8, 128, 25600, 151936, 1, 1, 0),
    ("qwen3-235b-a22b", 94, 4096, 64, 4, 128, 1536, 151936, 128, 8, 0),
    ("mixtral-8x7b", 32, 4096, 32, 8, 128, 14336, 32000, 8, 2, 0),
    ("gpt-oss-20b", 24, 2880, 64, 8, 64, 2880, 201088, 32, 4, 128),
    ("gpt-oss-120b", 36, 2880, 64, 8, 64, 2880, 201088, 128, 4, 128),
    ("minimax-m2.5", 62, 3072, 48, 8, 128, 1536, 200064, 256, 8, 0),
]
TPS = [1, 2, 4, 8]
GEMM_DTYPES = ["bfloat16", "fp8", "fp8_block", "nvfp4"]
MOE_DTYPES = ["bfloat16", "fp8", "fp8_block", "nvfp4", "w4a16_mxfp4", "w4a8_mxfp4_mxfp8", "int4_wo"]
KV_DTYPES = ["bfloat16", "fp8"]
MOE_DISTRIBUTIONS = ["power_law_1.01", "balanced"]  # AIConfigurator's model default first


def vkey(v):
    out = []
    for part in v.replace("post", ".").replace("rc", ".").split("."):
        out.append(int(part) if part.isdigit() else 0)
    return out


def versions(root, system, op, backend):
    d = os.path.join(root, DATA, system, op, backend)
    if not os.path.isdir(d):
        return []
    return sorted((v for v in os.listdir(d) if any(f.endswith(".parquet") for f in os.listdir(os.path.join(d, v)))), key=vkey)


def by_preference(vs, backend):
    want = vkey(PREFERRED[backend])
    return sorted(vs, key=lambda v: (sum(abs(a - b) * 100 ** -i for i, (a, b) in enumerate(zip(vkey(v) + [0] * 4, want + [0] * 4))), vkey(v)))


def needed_shapes():
    nk, attn, moe = set(), set(), set()
    for (_, _, h, heads, kv, hd, inter, vocab, e, act, win) in MODELS:
        for tp in TPS:
            if heads % tp:
                continue
            q, kvh = heads // tp, max(kv // tp, 1)
            shapes = [((q + 2 * kvh) * hd, h), (h, q * hd), (vocab // tp, h)]
            if e > 1:
                shapes.append((e, h))
            else:
                shapes += [(2 * inter // tp, h), (h, inter // tp)]
            nk.update(shapes)
            for w in {0, win}:
                attn.add((q, kvh, hd, w))
        if e > 1:
            moe.add((h, inter, act, e))
    return nk, attn, moe


def bracket(grid, v):
    """Grid points around a value: its two neighbours inside the grid, the two nearest
    outside it (what interpolation, or the roofline-scaled extrapolation, reads)."""
    grid = sorted(grid)
    below = [g for g in grid if g <= v]
    above = [g for g in grid if g >= v]
    if not above:
        return below[-2:]
    if not below:
        return above[:2]
    return sorted({below[-1], above[0]})


def corners(ngrid, kgrid, shapes):
    """The (n, k) grid pairs at the corners of the cells that hold the shapes."""
    keep = set()
    for n, k in shapes:
        keep.update((a, b) for a in bracket(ngrid, n) for b in bracket(kgrid, k))
    return keep


def fmt(ms):
    us = ms * 1e3
    return f"{us:.5g}"


def series(pairs):
    pairs = sorted(pairs)
    # Duplicated x (repeated measurements): keep the median.
    out, i = [], 0
    while i < len(pairs):
        j = i
        while j < len(pairs) and pairs[j][0] == pairs[i][0]:
            j += 1
        ys = sorted(p[1] for p in pairs[i:j])
        out.append((pairs[i][0], ys[len(ys) // 2]))
        i = j
    return " ".join(f"{x}:{fmt(y)}" for x, y in out)


def read(root, system, op, backend, version, name, columns):
    path = os.path.join(root, DATA, system, op, backend, version, name)
    if not os.path.exists(path):
        return None
    t = pq.read_table(path).to_pydict()
    n = len(t["latency"])
    defaults = {"window_size": 0, "step": 0, "kv_cache_dtype": "bfloat16", "distribution": "balanced", "backend": ""}
    for c in columns or []:
        if c not in t:
            t[c] = [defaults[c]] * n
    return t


def system_values(root, system):
    """The scalar `key: value` entries of the system's file (`<system>.yaml`), as strings."""
    vals = {}
    with open(os.path.join(root, DATA, "..", f"{system}.yaml")) as f:
        for line in f:
            key, _, rest = line.strip().partition(":")
            vals[key] = rest.split("#")[0].strip()
    return vals


def peak_flops(root, system):
    """Peak dense tensor throughput (FLOP/s) by KV format of the attention, from the
    system's file: BF16 for a BF16 cache, FP8 for an FP8 one (the larger bound)."""
    vals = system_values(root, system)
    bf16 = float(vals["bfloat16_tc_flops"])
    return {"bfloat16": bf16, "fp8": float(vals.get("fp8_tc_flops", bf16))}


def ctx_flops(batch, isl, heads, head_dim, window):
    """FLOPs of causal prefill attention: 4 x head_dim per (query, key) pair per head (QK^T
    and PV), over the pairs a causal mask (and a sliding window) keeps."""
    if window == 0 or isl <= window:
        pairs = isl * isl / 2
    else:
        pairs = isl * window - window * window / 2
    return 4.0 * batch * pairs * head_dim * heads


def convert(root, system, backend, out):
    nk_need, attn_need, moe_need = needed_shapes()
    lines, used = [], {}

    def pick(op, name):
        for v in by_preference(versions(root, system, op, backend), backend):
            if os.path.exists(os.path.join(root, DATA, system, op, backend, v, name)):
                return v
        return None

    # GEMM: one line per (dtype, n, k), latency over m.
    v = pick("gemm", "gemm_perf.parquet")
    if v is None:
        return None
    used["gemm"] = v
    t = read(root, system, "gemm", backend, v, "gemm_perf.parquet", ["gemm_dtype", "m", "n", "k", "latency"])
    keep = corners(set(t["n"]), set(t["k"]), nk_need)
    for d in GEMM_DTYPES:
        ns = sorted({n for dd, n in zip(t["gemm_dtype"], t["n"]) if dd == d})
        ks = sorted({k for dd, k in zip(t["gemm_dtype"], t["k"]) if dd == d})
        if ns:
            lines.append(f"gemmaxes\t{d}\t{','.join(map(str, ns))}\t{','.join(map(str, ks))}")
    groups = {}
    for d, m, n, k, lat in zip(t["gemm_dtype"], t["m"], t["n"], t["k"], t["latency"]):
        if d in GEMM_DTYPES and (n, k) in keep and lat > 0:
            groups.setdefault((d, n, k), []).append((m, lat))
    for (d, n, k), pts in sorted(groups.items()):
        lines.append(f"gemm\t{d}\t{n}\t{k}\t{series(pts)}")

    # Attention: context (batch, isl) and generation (batch, context), per head shape; each
    # shape from the nearest version that measured it. A context-attention table that times
    # any of its shapes faster than the GPU's peak tensor throughput can compute them is a
    # broken collection (vLLM 0.19.0 on H200 times 8 prompts of 8,192 tokens at 64 heads in
    # 1.1 ms: 8 PFLOPS on a 989 TFLOPS GPU) and is passed over for the next version.
    peaks = peak_flops(root, system)
    rejected = []
    for op_name, kind in (("context_attention_perf.parquet", "ctx"), ("generation_attention_perf.parquet", "gen")):
        cols = ["batch_size", "isl", "num_heads", "num_key_value_heads", "head_dim", "kv_cache_dtype", "step", "window_size", "latency"]
        found, kind_used = {}, set()
        for v in by_preference(versions(root, system, "attention", backend), backend):
            t = read(root, system, "attention", backend, v, op_name, cols)
            if t is None:
                continue
            groups = {}
            for b, s_, hq, hk, hd, kvd, step, w, lat in zip(*(t[c] for c in cols)):
                if (hq, hk, hd, w) in attn_need and kvd in KV_DTYPES and lat > 0:
                    x = s_ if kind == "ctx" else s_ + step
                    groups.setdefault((hq, hk, hd, w, kvd, b), []).append((x, lat))
            too_fast = {}
            if kind == "ctx":
                for (hq, hk, hd, w, kvd, b), pts in groups.items():
                    r = max(ctx_flops(b, x, hq, hd, w) / peaks[kvd] / (lat * 1e-3) for x, lat in pts)
                    shape = (hq, hk, hd, w, kvd)
                    too_fast[shape] = max(too_fast.get(shape, 0.0), r)
            for key, pts in groups.items():
                shape = key[:5]
                if too_fast.get(shape, 0.0) > 1.0:
                    continue
                if found.get(shape, v) == v:
                    found[shape] = v
                    kind_used.add(v)
                    lines.append(f"{kind}\t{key[0]}\t{key[1]}\t{key[2]}\t{key[3]}\t{key[4]}\t{key[5]}\t{series(pts)}")
            for shape, r in sorted(too_fast.items()):
                if r > 1.0 and shape not in found:
                    rejected.append(f"# {kind} {v} {'/'.join(map(str, shape))}: up to {r:.1f}x the GPU's peak: not used")
        if kind_used:
            used[kind] = ",".join(sorted(kind_used, key=vkey))

    # All-reduce: the backend's custom kernel (CUDA-graph variant where measured).
    v = pick("comm", "custom_allreduce_perf.parquet")
    if v is not None:
        used["allreduce"] = v
        t = read(root, system, "comm", backend, v, "custom_allreduce_perf.parquet", None)
        kinds = set(t.get("backend", [""] * len(t["latency"])))
        graph = next((k for k in sorted(kinds) if "graph" in str(k)), None)
        groups = {}
        for i, (g, size, lat) in enumerate(zip(t["num_gpus"], t["message_size"], t["latency"])):
            if graph is not None and t["backend"][i] != graph:
                continue
            if t["allreduce_dtype"][i] in ("bfloat16", "half", "float16") and lat > 0:
                groups.setdefault(g, []).append((size, lat))
        for g, pts in sorted(groups.items()):
            lines.append(f"allreduce\t{g}\t{series(pts)}")

    # MoE: per expert shape and format, from the version whose kernels are fastest. vLLM and
    # SGLang change their MoE kernel choice between versions (on B200, vLLM 0.19's collection
    # measured a generic MXFP4 path 3-4x slower than the FlashInfer kernel 0.24 measured),
    # and serve with the fastest kernel they support on the GPU.
    cols = ["moe_dtype", "num_tokens", "hidden_size", "inter_size", "topk", "num_experts", "moe_tp_size", "moe_ep_size", "distribution", "latency"]
    candidates = {}  # (d, h, i, k, e) -> {version: {(mtp, mep): pts}}
    for v in by_preference(versions(root, system, "moe", backend), backend):
        t = read(root, system, "moe", backend, v, "moe_perf.parquet", cols)
        if t is None:
            continue
        groups = {}
        for d, nt, h, i, k, e, mtp, mep, dist, lat in zip(*(t[c] for c in cols)):
            if (h, i, k, e) in moe_need and d in MOE_DTYPES and dist in MOE_DISTRIBUTIONS and lat > 0:
                groups.setdefault((d, h, i, k, e, mtp, mep, dist), []).append((nt, lat))
        for key, pts in groups.items():
            d, h, i, k, e, mtp, mep, dist = key
            # The model default where measured, else balanced routing.
            if dist != MOE_DISTRIBUTIONS[0] and (d, h, i, k, e, mtp, mep, MOE_DISTRIBUTIONS[0]) in groups:
                continue
            candidates.setdefault((d, h, i, k, e), {}).setdefault(v, {})[(mtp, mep)] = pts

    def speed(par):
        pts = par.get((1, 1)) or next(iter(par.values()))
        pts = sorted(pts)
        def at(x):
            for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
                if x0 <= x <= x1:
                    return y0 + (y1 - y0) * (x - x0) / (x1 - x0)
            return pts[-1][1] * x / pts[-1][0] if x > pts[-1][0] else pts[0][1]
        return sum(at(x) for x in (16, 128, 1024))

    moe_used = set()
    for shape, by_version in sorted(candidates.items()):
        v = min(by_version, key=lambda v: (speed(by_version[v]), vkey(v)))
        moe_used.add(v)
        d, h, i, k, e = shape
        for (mtp, mep), pts in sorted(by_version[v].items()):
            lines.append(f"moe\t{d}\t{h}\t{i}\t{k}\t{e}\t{mtp}\t{mep}\t{v}\t{series(pts)}")
    if moe_used:
        used["moe"] = ",".join(sorted(moe_used, key=vkey))

    # The system's memory-op constants (AIConfigurator's empirical formula for element-wise
    # kernels, which have no tables): bandwidth, its achieved fraction, a fixed latency.
    mem = system_values(root, system)
    header = [
        "# simctl kernel tables, format 1: measured per-kernel latencies in microseconds.",
        f"# Source: NVIDIA AIConfigurator, github.com/ai-dynamo/aiconfigurator @ {SOURCE_COMMIT},",
        f"# {DATA}/{system}/<op>/{backend}/<version>/ (Apache-2.0). Converted by",
        "# tools/kernels/convert.py; only the shapes of simctl's catalogue models are kept.",
        f"system\t{system}\t{SYSTEMS[system]}",
        f"backend\t{backend}\t{used['gemm']}",
        f"memory\t{mem['mem_bw']}\t{mem['mem_bw_empirical_scaling_factor']}\t{mem['mem_empirical_constant_latency']}",
    ] + [f"version\t{op}\t{v}" for op, v in used.items()] + sorted(set(rejected))
    path = os.path.join(out, f"{system}.{backend}.tsv")
    with open(path, "w") as f:
        f.write("\n".join(header + lines) + "\n")
    return path


def main():
    if len(sys.argv) < 2:
        print(__doc__)
        sys.exit(2)
    root = sys.argv[1]
    out = sys.argv[2] if len(sys.argv) > 2 else os.path.join(os.path.dirname(__file__), "..", "..", "engine", "kernels")
    try:
        head = subprocess.run(["git", "-C", root, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    except OSError:
        head = ""
    if head and head != SOURCE_COMMIT:
        sys.exit(f"{root} is at {head}, not the pinned {SOURCE_COMMIT}")
    os.makedirs(out, exist_ok=True)
    for system in SYSTEMS:
        for backend in PREFERRED:
            p = convert(root, system, backend, out)
            if p:
                print(f"{p}: {os.path.getsize(p)} bytes")


if __name__ == "__main__":
    main()
