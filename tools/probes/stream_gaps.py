"""Step times as decode streams see them, on a running vLLM engine (docs/profile.md, "Decode
under load"): n streams of `ctx` prompt tokens and `out` output tokens, started together, and
the gaps between their tokens in the window where all of them decode.

    python stream_gaps.py KIND N CTX OUT [PROMPT]

KIND: lockstep (every stream the same context), stagger (contexts 0.25-1.75 x CTX), churn
(short requests every 100 ms beside them), bigchurn (a PROMPT-token request every 0.6 s:
the steps after each prefill against those far from any), pairs (PROMPT-token requests, one
or two at once: the step that holds them). Needs aiohttp (the engine's venv has it); run it
pinned away from the engine (taskset -c 1). Prompts are random token ids, new on every run
(the engine's prefix cache would serve repeated ones).
"""
import asyncio, json, sys, time, random, statistics as st
import aiohttp

URL = "http://127.0.0.1:8011/v1/completions"
MODEL = "tiny-llama"


async def stream(session, prompt_len, out, rid, log, start_at):
    await asyncio.sleep(max(0.0, start_at - time.monotonic()))
    rnd = random.Random(f"{rid}-{time.time_ns()}")
    prompt = [rnd.randrange(10, 4000) for _ in range(prompt_len)]
    body = {"model": MODEL, "prompt": prompt, "max_tokens": out, "min_tokens": out, "ignore_eos": True,
            "stream": True, "temperature": 0.0}
    t0 = time.monotonic()
    times = []
    async with session.post(URL, json=body) as r:
        buf = b""
        async for chunk in r.content.iter_any():
            now = time.monotonic()
            buf += chunk
            while b"\n\n" in buf:
                ev, buf = buf.split(b"\n\n", 1)
                if ev.startswith(b"data: ") and ev != b"data: [DONE]":
                    d = json.loads(ev[6:])
                    if d.get("choices") and d["choices"][0].get("text") is not None:
                        times.append(now)
    log.append((rid, prompt_len, out, t0, times))


def window_itl(log, long_ids):
    """Median gap between tokens of the long streams, in the window where all of them decode."""
    longs = [l for l in log if l[0] in long_ids]
    lo = max(l[4][2] for l in longs)   # all past their first tokens
    hi = min(l[4][-1] for l in longs)
    gaps = []
    for l in longs:
        ts = [t for t in l[4] if lo <= t <= hi]
        gaps += [b - a for a, b in zip(ts, ts[1:])]
    return lo, hi, gaps


async def main(kind, n, ctx, out):
    log = []
    conn = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=conn) as s:
        now = time.monotonic() + 0.2
        tasks = []
        if kind == "lockstep":
            for i in range(n):
                tasks.append(stream(s, ctx, out, i, log, now))
        elif kind == "stagger":
            # contexts spread: stream i gets ctx*(0.25..1.75), started together
            for i in range(n):
                c = int(ctx * (0.25 + 1.5 * i / max(n - 1, 1)))
                tasks.append(stream(s, c, out, i, log, now))
        elif kind == "bigchurn":
            for i in range(n):
                tasks.append(stream(s, ctx, out, i, log, now))
            plen = int(sys.argv[5]) if len(sys.argv) > 5 else 1000
            for k in range(12):
                tasks.append(stream(s, plen, 2, 1000 + k, log, now + 1.0 + 0.6 * k))
        elif kind == "pairs":
            plen = int(sys.argv[5]) if len(sys.argv) > 5 else 800
            for i in range(n):
                tasks.append(stream(s, ctx, out, i, log, now))
            # alternately one prompt and two prompts at once
            for k in range(12):
                t = now + 2.5 + 0.6 * k
                tasks.append(stream(s, plen, 2, 1000 + 2 * k, log, t))
                if k % 2 == 1:
                    tasks.append(stream(s, plen, 2, 1001 + 2 * k, log, t))
        elif kind == "churn":
            for i in range(n):
                tasks.append(stream(s, ctx, out, i, log, now))
            # short requests every 100 ms once the long ones decode
            for k in range(40):
                tasks.append(stream(s, 16, 2, 1000 + k, log, now + 1.0 + 0.1 * k))
        await asyncio.gather(*tasks)
    lo, hi, gaps = window_itl(log, set(range(n)))
    # the steps of stream 0: gaps in order; those after a long (prefill) gap
    l0 = [l for l in log if l[0] == 0][0][4]
    g0 = [b - a for a, b in zip(l0, l0[1:])]
    base = st.median(g0)
    after = {d: [] for d in range(1, 21)}
    big = []
    for k, g in enumerate(g0):
        if g > 3 * base:
            big.append(g)
            for d in after:
                if k + d < len(g0) and g0[k + d] < 3 * base:
                    after[d].append(g0[k + d])
    print(f"  max gap {max(g0)*1e3:.1f} ms, base {base*1e3:.2f}, injected {sum(1 for l in log if l[0] >= 1000)} first tokens at " + ", ".join(f"{l[4][0]-l[3]:.2f}" for l in log if l[0] >= 1000))
    far = [g for k, g in enumerate(g0) if g < 3 * base and all(not (0 < k - j <= 20) for j, h in enumerate(g0) if h > 3 * base)]
    if far:
        print(f"  far from any prefill: mean {st.mean(far)*1e3:.2f} ms over {len(far)} gaps")
    if kind == "pairs":
        # each injection's step: the long gap of stream 0 that holds its first token
        for single in (True, False):
            ks = [k for k in range(12) if (k % 2 == 0) == single]
            gs = []
            for k in ks:
                ft = [l[4][0] for l in log if l[0] in (1000 + 2 * k, 1001 + 2 * k)]
                t = max(ft)
                # the stream-0 gap that ends at or just after t
                for a, b in zip(l0, l0[1:]):
                    if a < t <= b + 0.002:
                        gs.append(b - a)
                        break
            print(f"  {'one prompt ' if single else 'two prompts'}: step {st.mean(gs)*1e3:.1f} ms (n={len(gs)}), extra over base {(st.mean(gs)-base)*1e3:.1f} ms")
    if big:
        print(f"  stream 0: median gap {base*1e3:.2f} ms, {len(big)} long gaps (mean {st.mean(big)*1e3:.1f} ms); gaps after one: " + ", ".join(f"+{d}: {st.mean(v)*1e3:.2f}" for d, v in after.items() if v))
    gaps.sort()
    q = lambda p: gaps[int(p * (len(gaps) - 1))] * 1e3
    print(f"{kind} n={n} ctx={ctx} out={out}: window {hi-lo:.2f} s, {len(gaps)} gaps, ITL p10 {q(0.1):.2f} p50 {q(0.5):.2f} p90 {q(0.9):.2f} mean {st.mean(gaps)*1e3:.2f} ms")


if __name__ == "__main__":
    kind, n, ctx, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    asyncio.run(main(kind, n, ctx, out))
