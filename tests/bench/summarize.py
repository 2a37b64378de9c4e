#!/usr/bin/python3
"""summarize.py RAW: Markdown tables from the RESULT lines that tests/bench/run.sh saved.

One table per metric.  Each cell is the median over the repetitions, with the
(min-max) range.  The ratio columns say how many times faster twine is than
the peer, from the medians: peer / twine for times, twine / peer for rates; so
> 1 always means twine is better.  The target column is twine's goal, judged on
twine's median.  The backend tables (bench_backends) compare twine's own
readiness backends: one column per backend, no ratios or targets.  The
thread-bridge table (bench_pool, bench_spawn, and bench_xthread's figures when
the reactor part ran) compares twine with libuv alone, against the target "no
worse than libuv": twine's median ÷ libuv's, as how many times better, >= 1.
Standard library only.
"""
import statistics
import sys
from collections import defaultdict

IMPLS = [("twine", "twine"), ("uv", "libuv"), ("ev", "libevent")]

# (bench, key, title, row field, lower is better, format, {row value: (target, op)})
METRICS = [
    ("timers", "sc_rand_ns",
     "Timers: schedule + cancel one timer, random deadline in [1, 100] s, in a loop callback (ns per pair)",
     "N", True, "{:.1f}", {1000000: (25, "<=")}),
    ("timers", "sc_early_ns",
     "Timers: schedule + cancel one timer due in 0.5 s, before every pending timer (ns per pair)",
     "N", True, "{:.1f}", {}),
    ("timers", "fire_ns",
     "Timers: fire 1M timers due within 50 ms, with N far timers pending (ns per fired timer)",
     "N", True, "{:.0f}", {1000: (800, "<="), 1000000: (800, "<=")}),
    ("timers", "add_far_ns",
     "Timers: schedule one of the N far timers (setup; ns per timer)",
     "N", True, "{:.1f}", {}),
    ("timers", "add_near_ns",
     "Timers: schedule one of the near timers on top of N (ns per timer)",
     "N", True, "{:.1f}", {}),
    ("xtput", "calls_per_s",
     "Calls from threads: throughput, K producers x M calls each (million calls/s)",
     "K", False, "{:.2f}", {1: (10, ">="), 4: (12, ">=")}),
    ("xtput", "calls_per_wakeup",
     "Calls from threads: calls run per loop wakeup (diagnostic; higher = better batching)",
     "K", None, "{:.1f}", {}),
    ("xtput", "cpu_util",
     "Calls from threads: process CPU time / elapsed time (diagnostic; 2 vCPUs)",
     "K", None, "{:.2f}", {}),
]
LAT_ROWS = [("p50_us", "p50"), ("p90_us", "p90"), ("p99_us", "p99"), ("p999_us", "p99.9")]
LAT_TARGETS = {"p50_us": (10, "<=")}

BACKENDS = ["select", "poll", "epoll", "kqueue"]  # column order; absent ones are left out
# (key, title, format)
BACKEND_METRICS = [
    ("round_ns", "Backends: one ready descriptor among N idle ones (ns per loop iteration)", "{:.0f}"),
    ("addrm_ns", "Backends: add + remove one reader with N idle ones watched (ns per pair)", "{:.1f}"),
]


def parse(path):
    header, rows, failed = [], [], []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith("#"):
                header.append(line.lstrip("# "))
            elif line.startswith("FAILED"):
                failed.append(line)
            elif line.startswith("RESULT"):
                d = dict(tok.partition("=")[::2] for tok in line.split()[1:])
                rows.append(d)
    return header, rows, failed


def cell(vals, fmt):
    if not vals:
        return "n/a"
    med = statistics.median(vals)
    if len(vals) == 1:
        return fmt.format(med)
    return f"{fmt.format(med)} ({fmt.format(min(vals))}–{fmt.format(max(vals))})"


def ratio(tw, peer, lower_better):
    if not tw or not peer:
        return "n/a"
    a, b = statistics.median(tw), statistics.median(peer)
    if a <= 0 or b <= 0:
        return "n/a"
    return f"{(b / a) if lower_better else (a / b):.2f}×"


def verdict(tw, target):
    if target is None:
        return "—", ""
    limit, op = target
    if not tw:
        return f"{op.replace('<=', '≤').replace('>=', '≥')} {limit}", "n/a"
    med = statistics.median(tw)
    ok = med <= limit if op == "<=" else med >= limit
    return f"{op.replace('<=', '≤').replace('>=', '≥')} {limit}", "PASS" if ok else "**MISS**"


def table(out, title, rowlabel, rows, lower_better, fmt):
    """rows: list of (label, {impl: [values]}, target or None).
    lower_better None: a diagnostic, no ratio or target columns."""
    out.append(f"### {title}")
    out.append("")
    if lower_better is None:
        out.append(f"| {rowlabel} | twine | libuv | libevent |")
        out.append("|---|---:|---:|---:|")
        for label, vals, _ in rows:
            out.append(f"| {label} | " + " | ".join(cell(vals.get(i), fmt) for i, _ in IMPLS) + " |")
        out.append("")
        return
    out.append(f"| {rowlabel} | twine | libuv | libevent | × vs libuv | × vs libevent | target | |")
    out.append("|---|---:|---:|---:|---:|---:|---:|---|")
    for label, vals, target in rows:
        t, verd = verdict(vals.get("twine"), target)
        out.append(f"| {label} | " + " | ".join(cell(vals.get(i), fmt) for i, _ in IMPLS) +
                   f" | {ratio(vals.get('twine'), vals.get('uv'), lower_better)}"
                   f" | {ratio(vals.get('twine'), vals.get('ev'), lower_better)} | {t} | {verd} |")
    out.append("")


def backend_tables(out, rows):
    """bench_backends: rows N (idle watched descriptors), one column per backend."""
    be = [r for r in rows if r.get("bench") == "backend"]
    if not be:
        return
    cols = [b for b in BACKENDS if any(r["impl"] == b for r in be)]
    cols += sorted({r["impl"] for r in be} - set(cols))
    for key, title, fmt in BACKEND_METRICS:
        data = defaultdict(lambda: defaultdict(list))
        for r in be:
            if key in r:
                data[int(r["idle"])][r["impl"]].append(float(r[key]))
        if not data:
            continue
        out.append(f"### {title}")
        out.append("")
        out.append("| N | " + " | ".join(cols) + " |")
        out.append("|---|" + "---:|" * len(cols))
        for n in sorted(data):
            out.append(f"| {n:,} | " + " | ".join(
                cell(data[n][c], fmt) if data[n].get(c) else "—" for c in cols) + " |")
        out.append("")


# ---- echo servers (tests/bench/echo/run.sh) ---------------------------------------
ECHO_IMPLS = [("twine", "twine"), ("epoll", "raw epoll"), ("libevent", "libevent"), ("libuv", "libuv"),
              ("twisted", "Twisted")]
# (workload, key, label, kind: "rate" higher is better, "time"/"mem" lower is better, format)
ECHO_ROWS = [
    ("pp1", "msgs_per_s", "ping-pong 1 conn (msgs/s)", "rate", "{:,.0f}"),
    ("pp1", "p99_us", "ping-pong 1 conn: p99 (µs)", "time", "{:,.1f}"),
    ("pp100", "msgs_per_s", "ping-pong 100 conns (msgs/s)", "rate", "{:,.0f}"),
    ("pp100", "p99_us", "ping-pong 100 conns: p99 (µs)", "time", "{:,.0f}"),
    ("pp1000", "msgs_per_s", "ping-pong 1,000 conns (msgs/s)", "rate", "{:,.0f}"),
    ("pp1000", "p99_us", "ping-pong 1,000 conns: p99 (µs)", "time", "{:,.0f}"),
    ("stream", "mb_per_s", "stream 10 conns (MB/s)", "rate", "{:,.0f}"),
    ("connect", "conns_per_s", "connect + echo + close (conns/s)", "rate", "{:,.0f}"),
    ("idle", "rss_per_conn_b", "idle conn: server RSS (bytes/conn)", "mem", "{:,.0f}"),
]
# the counted figures: (bench, label, format, twine's target)
ECHO_COUNTS = [
    ("echo_sys", "system calls per echoed message", "{:.2f}", 2.05),
    ("echo_ir", "user-space instructions per echoed message", "{:,.0f}", 250),
]
ECHO_VS_EPOLL = 0.95   # twine >= 0.95x the raw epoll loop on every throughput row
ECHO_MEM_LIMIT = 281   # bytes: below libuv's figure in shared/bench/RESULTS.md


def med(vals):
    return statistics.median(vals) if vals else None


def better(tw, peer, kind):
    """How many times better twine is than the peer (> 1: twine ahead)."""
    if tw is None or peer is None or tw <= 0 or peer <= 0:
        return None
    return tw / peer if kind == "rate" else peer / tw


def echo_tables(out, rows):
    ech = [r for r in rows if r.get("bench") == "echo"]
    counts = {b: defaultdict(list) for b, *_ in ECHO_COUNTS}   # bench -> impl -> RESULT rows
    for r in rows:
        if r.get("bench") in counts:
            counts[r["bench"]][r["impl"]].append(r)

    def cmed(bench, impl, key="per_msg"):   # median over the rounds of a counted figure
        return med([float(r[key]) for r in counts[bench].get(impl, []) if key in r])

    if not ech and not any(counts.values()):
        return
    present = {r["impl"] for r in ech} | {i for c in counts.values() for i in c}
    impls = [(i, n) for i, n in ECHO_IMPLS if i in present]
    data = defaultdict(lambda: defaultdict(list))
    for r in ech:
        for w, key, *_ in ECHO_ROWS:
            if r.get("workload") == w and key in r:
                data[(w, key)][r["impl"]].append(float(r[key]))
    reps = len({r.get("rep") for r in ech})
    idle_n = next((r.get("conns") for r in ech if r.get("workload") == "idle"), None)
    label = {(w, k): (lbl.replace("idle conn", f"idle conn ({int(idle_n):,} held)") if idle_n else lbl)
             for w, k, lbl, *_ in ECHO_ROWS}

    if ech:
        out.append(f"### Echo servers: median of {reps} round(s) (min–max); server and loadgen on one core each")
        out.append("")
        out.append("| workload | " + " | ".join(n for _, n in impls) + " |")
        out.append("|---|" + "---:|" * len(impls))
        for w, key, _, kind, fmt in ECHO_ROWS:
            if (w, key) in data:
                out.append(f"| {label[(w, key)]} | " +
                           " | ".join(cell(data[(w, key)].get(i), fmt) for i, _ in impls) + " |")
        out.append("")

        out.append("### Echo servers: ratio to the raw epoll loop (medians; server ÷ raw epoll; "
                   "rates: > 1 is faster, p99: < 1 is faster; memory: bytes more than raw epoll)")
        out.append("")
        others = [(i, n) for i, n in impls if i != "epoll"]
        out.append("| workload | " + " | ".join(n for _, n in others) + " |")
        out.append("|---|" + "---:|" * len(others))
        for w, key, _, kind, fmt in ECHO_ROWS:
            if (w, key) not in data:
                continue
            ref = med(data[(w, key)].get("epoll"))
            cells = []
            for i, _ in others:
                v = med(data[(w, key)].get(i))
                if v is None or ref is None:
                    cells.append("n/a")
                elif kind == "mem":
                    cells.append(f"{v - ref:+,.0f} B")
                else:
                    cells.append(f"{v / ref:.2f}×" if ref > 0 else "n/a")
            out.append(f"| {label[(w, key)]} | " + " | ".join(cells) + " |")
        out.append("")

    # twine's targets
    if "twine" in present:
        out.append("### Echo targets for twine (× vs a peer: how many times better twine is; > 1 = ahead)")
        out.append("")
        out.append("| workload | twine ÷ raw epoll | target | | × vs libevent | ahead | × vs libuv | ahead |")
        out.append("|---|---:|---|---|---:|---|---:|---|")

        def pm(ok):
            return "n/a" if ok is None else ("PASS" if ok else "**MISS**")

        def vs(tw, vals, kind):
            b = better(tw, med(vals), kind)
            return ("n/a", "n/a") if b is None else (f"{b:.2f}×", pm(b > 1))

        for w, key, _, kind, fmt in ECHO_ROWS:
            if (w, key) not in data:
                continue
            d = data[(w, key)]
            tw, ref = med(d.get("twine")), med(d.get("epoll"))
            if kind == "rate":
                r = f"{tw / ref:.2f}×" if tw and ref else "n/a"
                t, v = f"≥ {ECHO_VS_EPOLL}×", pm(None if not (tw and ref) else tw / ref >= ECHO_VS_EPOLL)
            elif kind == "mem":
                r = f"{tw - ref:+,.0f} B" if tw is not None and ref is not None else "n/a"
                t, v = f"< {ECHO_MEM_LIMIT} B", pm(None if tw is None else tw < ECHO_MEM_LIMIT)
            else:
                r = f"{tw / ref:.2f}×" if tw and ref else "n/a"
                t, v = "—", ""
            out.append(f"| {label[(w, key)]} | {r} | {t} | {v} | " + " | ".join(
                " | ".join(vs(tw, d.get(p), kind)) for p in ("libevent", "libuv")) + " |")
        for bench, lbl, fmt, limit in ECHO_COUNTS:
            tw, ref = cmed(bench, "twine"), cmed(bench, "epoll")
            r = f"{tw / ref:.2f}×" if tw and ref else "n/a"
            out.append(f"| {lbl} (ping-pong 100) | {r} | ≤ {limit:,} | {pm(None if tw is None else tw <= limit)} | " +
                       " | ".join(" | ".join(vs(tw, [v] if (v := cmed(bench, p)) is not None else [], "time"))
                                  for p in ("libevent", "libuv")) + " |")
        out.append("")

    if ech:
        out.append("### Echo servers: CPU use while measuring, server % / loadgen % (medians; diagnostic: "
                   "~100 marks the side that limited the run; process time, softirq not included)")
        out.append("")
        out.append("| workload | " + " | ".join(n for _, n in impls) + " |")
        out.append("|---|" + "---:|" * len(impls))
        for w in ("pp1", "pp100", "pp1000", "stream", "connect"):
            cpu = defaultdict(lambda: ([], []))
            for r in ech:
                if r.get("workload") == w and "srv_cpu" in r and "lg_cpu" in r:
                    cpu[r["impl"]][0].append(float(r["srv_cpu"]))
                    cpu[r["impl"]][1].append(float(r["lg_cpu"]))
            if cpu:
                out.append(f"| {w} | " + " | ".join(
                    f"{med(cpu[i][0]):.0f} / {med(cpu[i][1]):.0f}" if i in cpu else "n/a" for i, _ in impls) + " |")
        out.append("")

    if any(counts.values()):
        anyc = next(r for c in counts.values() for rs in c.values() for r in rs)
        sysr = [r for rs in counts["echo_sys"].values() for r in rs]
        nsys = len({r.get("rep") for r in sysr})
        out.append(f"### Echo servers: counted figures in steady ping-pong, 100 connections × 64 B "
                   f"(difference of a {anyc.get('long_s')} s and a {anyc.get('short_s')} s run; "
                   f"system calls: {sysr[0].get('tool') if sysr else 'n/a'}, median of {nsys} round(s) (min–max); "
                   "instructions: callgrind Ir, one run)")
        out.append("")
        out.append("| server | system calls / msg | of which (per msg, medians) | user-space instructions / msg |")
        out.append("|---|---:|---|---:|")
        for i, n in impls:
            srs = counts["echo_sys"].get(i, [])
            ir = cmed("echo_ir", i)
            if srs:
                keys = {k for r in srs for k in r if k.startswith("n_")}
                kv = sorted(((k[2:], med([float(r.get(k, 0)) for r in srs])) for k in keys),
                            key=lambda x: -abs(x[1]))
                parts = ", ".join(f"{k} {v:.2f}" for k, v in kv if abs(v) >= 0.005)
                line = f"| {n} | {cell([float(r['per_msg']) for r in srs], '{:.2f}')} | {parts} | "
            else:
                line = f"| {n} | n/a | | "
            out.append(line + (f"{ir:,.0f} |" if ir is not None else "n/a |"))
        out.append("")


# ---- thread bridge and processes against libuv (bench_pool, bench_spawn) ------------
# (bench, row field or None, key, label ({} is the row value), "rate" or "time", format, scale)
THREAD_ROWS = [
    ("xtput", "K", "calls_per_s", "call_from_thread: calls/s, {} producer(s) (millions)", "rate", "{:.2f}", 1e-6),
    ("xlat", None, "p50_us", "call_from_thread: wake latency p50 (µs)", "time", "{:.1f}", 1),
    ("xlat", None, "p99_us", "call_from_thread: wake latency p99 (µs)", "time", "{:.1f}", 1),
    ("pooltput", "C", "rt_per_s", "defer_to_thread: round trips/s, {} in flight", "rate", "{:,.0f}", 1),
    ("poollat", None, "p50_us", "defer_to_thread: round trip, one at a time, p50 (µs)", "time", "{:.1f}", 1),
    ("poollat", None, "p99_us", "defer_to_thread: round trip, one at a time, p99 (µs)", "time", "{:.1f}", 1),
    ("spawn", "C", "spawns_per_s", "spawn + reap /bin/true: spawns/s, at most {} at once", "rate", "{:,.0f}", 1),
]
THREAD_DIAG = [
    ("pooltput", "C", "cpu_util", "defer_to_thread, {} in flight: process CPU time / elapsed", "{:.2f}"),
    ("pooltput", "C", "cpu_us_per_rt", "defer_to_thread, {} in flight: process CPU per round trip (µs)", "{:.2f}"),
    ("spawn", "C", "cpu_us_per_spawn", "spawn, at most {} at once: parent CPU per spawn (µs)", "{:,.0f}"),
]
THREAD_TARGET = 1.0   # twine no worse than libuv


def thread_tables(out, rows):
    if not any(r.get("bench") in ("pooltput", "poollat", "spawn") for r in rows):
        return

    def collect(bench, rowkey, key, scale=1):
        data = defaultdict(lambda: defaultdict(list))
        for r in rows:
            if r.get("bench") == bench and key in r and r.get("impl") in ("twine", "uv"):
                data[int(r[rowkey]) if rowkey else 0][r["impl"]].append(float(r[key]) * scale)
        return data

    def sizes(bench):   # the distinct N (n) of a bench's runs, "a/b"
        ns = sorted({int(r.get("N") or r.get("n")) for r in rows if r.get("bench") == bench})
        return "/".join(f"{v:,}" for v in ns) or "n/a"

    thr = next((r["threads"] for r in rows if r.get("bench") in ("pooltput", "poollat")), "?")
    out.append(f"### Thread bridge and processes against libuv (pool of {thr} threads; "
               f"defer_to_thread N = {sizes('pooltput')}, latency n = {sizes('poollat')}; "
               f"spawns N = {sizes('spawn')}; × = how many times better twine is)")
    out.append("")
    out.append("| measure | twine | libuv | × vs libuv | target | |")
    out.append("|---|---:|---:|---:|---:|---|")
    for bench, rowkey, key, label, kind, fmt, scale in THREAD_ROWS:
        data = collect(bench, rowkey, key, scale)
        for k in sorted(data):
            tw, uv = data[k].get("twine"), data[k].get("uv")
            b = better(med(tw), med(uv), kind)
            verd = "n/a" if b is None else ("PASS" if b >= THREAD_TARGET else "**MISS**")
            out.append(f"| {label.format(k)} | {cell(tw, fmt)} | {cell(uv, fmt)} | "
                       f"{'n/a' if b is None else f'{b:.2f}×'} | ≥ {THREAD_TARGET:.2f}× | {verd} |")
    out.append("")
    out.append("### Thread pool and spawning: CPU use (diagnostic; 2 vCPUs; CPU per operation "
               "is less disturbed by other processes than the rates)")
    out.append("")
    out.append("| measure | twine | libuv |")
    out.append("|---|---:|---:|")
    for bench, rowkey, key, label, fmt in THREAD_DIAG:
        data = collect(bench, rowkey, key)
        for k in sorted(data):
            out.append(f"| {label.format(k)} | {cell(data[k].get('twine'), fmt)} | "
                       f"{cell(data[k].get('uv'), fmt)} |")
    out.append("")


def main(path):
    header, rows, failed = parse(path)
    out = [h + "  " for h in header]
    out.append("")
    if failed:
        out.append("**FAILED runs (excluded):**")
        out += [f"- `{f}`" for f in failed]
        out.append("")
    bad = [r for r in rows if r.get("ok") != "1"]
    if bad:
        out.append(f"**{len(bad)} RESULT lines with ok=0 (excluded)**")
        out.append("")
    rows = [r for r in rows if r.get("ok") == "1"]
    reps = sorted({r.get("rep", "1") for r in rows})
    out.append(f"Cells: median over {len(reps)} repetition(s), (min–max). "
               "**× columns: how many times faster twine is than that peer** "
               "(peer ÷ twine for times, twine ÷ peer for rates; > 1 means twine is better), "
               "from the medians. Target and PASS/MISS judge twine's median.")
    out.append("")

    for bench, key, title, rowkey, lower, fmt, targets in METRICS:
        data = defaultdict(lambda: defaultdict(list))
        for r in rows:
            if r.get("bench") == bench and key in r:
                v = float(r[key])
                if key == "calls_per_s":
                    v /= 1e6
                data[int(r[rowkey])][r["impl"]].append(v)
        if not data:
            continue
        if bench == "xtput":
            m = next(r["M"] for r in rows if r.get("bench") == "xtput")
            title = title.replace("M calls", f"M = {int(m):,} calls")
        if bench == "timers":
            fired = next((r["fired"] for r in rows if r.get("bench") == "timers"), None)
            if fired and int(fired) != 1000000:
                title = title.replace("1M", f"{int(fired):,}")
        table(out, title, rowkey,
              [(f"{k:,}", data[k], targets.get(k)) for k in sorted(data)], lower, fmt)

    lat = defaultdict(lambda: defaultdict(list))
    for r in rows:
        if r.get("bench") == "xlat":
            for key, _ in LAT_ROWS:
                lat[key][r["impl"]].append(float(r[key]))
    if lat:
        n = next(r["n"] for r in rows if r.get("bench") == "xlat")
        table(out, f"Calls from threads: wake latency of one call into an idle loop "
                   f"({int(n):,} calls, 200–800 µs apart; µs)", "percentile",
              [(label, lat[key], LAT_TARGETS.get(key)) for key, label in LAT_ROWS], True, "{:.1f}")
    backend_tables(out, rows)
    thread_tables(out, rows)
    echo_tables(out, rows)
    print("\n".join(out))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: summarize.py RESULTS-FILE")
    main(sys.argv[1])
