#!/usr/bin/python3
"""summarize.py RAW: Markdown tables from the RESULT lines that tests/bench/run.sh saved.

One table per metric.  Each cell is the median over the repetitions, with the
(min-max) range.  The ratio columns say how many times faster twine is than
the peer, from the medians: peer / twine for times, twine / peer for rates; so
> 1 always means twine is better.  The target column is twine's goal, judged on
twine's median.  The backend tables (bench_backends) compare twine's own
readiness backends: one column per backend, no ratios or targets.  Standard
library only.
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
    print("\n".join(out))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: summarize.py RESULTS-FILE")
    main(sys.argv[1])
