"""Where a validation record's TPOT error sits (docs/profile.md, "Decode under load"): the
requests of each load by quartile of their live TPOT, with the simulation's TPOT for the same
requests and how many prefills landed, per output token, while each decoded.

    python3 tools/probes/record_quartiles.py validation/records/poisson_uniform-tiny-xeon
"""
import csv
import statistics as st
import sys


def rows(path):
    return {int(r["request_id"]): r for r in csv.DictReader(open(path))}


for rec in sys.argv[1:]:
    for load in ["load-30", "load-60", "load-85"]:
        live, sim = rows(f"{rec}/{load}/live/requests.csv"), rows(f"{rec}/{load}/sim/requests.csv")
        first = {j: float(o["arrival_s"]) + float(o["ttft_ms"]) / 1e3 for j, o in live.items() if o["ttft_ms"]}
        out = []
        for i, l in live.items():
            s = sim.get(i)
            if not s or not l["tpot_ms"] or not s["tpot_ms"]:
                continue
            t0, t1 = first[i], float(l["arrival_s"]) + float(l["e2e_ms"]) / 1e3
            prefills = sum(1 for j, t in first.items() if j != i and t0 < t <= t1)
            out.append((float(l["tpot_ms"]), float(s["tpot_ms"]), prefills / int(l["output_tokens"])))
        out.sort()
        n = len(out)
        print(f"{rec} {load}: {n} requests, sim/live TPOT median {st.median(b / a for a, b, _ in out):.3f}")
        for q in range(4):
            part = out[q * n // 4:(q + 1) * n // 4]
            live_q, sim_q = st.median(a for a, _, _ in part), st.median(b for _, b, _ in part)
            print(f"  quartile {q + 1}: live {live_q:5.1f} ms, sim {sim_q:5.1f} ms ({sim_q / live_q - 1:+.0%}), prefills per token {st.mean(p for _, _, p in part):.3f}")
