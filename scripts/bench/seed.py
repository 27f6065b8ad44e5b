#!/usr/bin/env python3
"""Seed N documents {title, n, owner} (n = 0..N-1) into a collection, stdlib only.

Both servers get byte-identical documents: document i is derived from
random.Random(i), as in the team's PocketBase baseline seeder.

  --api pocketbase  POST {base}/api/collections/{c}/records  one record per request,
                    8 threads (as the PocketBase baseline did), reply {"id":…};
                    with --batch > 1: POST {base}/api/batch {"requests":[{method, url,
                    body}, …]} (PocketBase's batch API, one transaction per request; it
                    must be enabled in the settings), reply [{"status", "body":{"id"}}, …]
  --api lightbase   POST {base}/v1/database/instances/(default)/databases/(default)
                         /collections/{c}/documents  body {"data":[…]} with --batch
                    documents per request, reply {"insertedIds":[…]}

Writes the created ids, one a line and in order of n, to --out.
Exits non-zero (printing the exact request and reply) on the first failure.
"""
import argparse, json, random, sys, time, urllib.error, urllib.request
from concurrent.futures import ThreadPoolExecutor

LB_PREFIX = "/v1/database/instances/(default)/databases/(default)"
OWNERS = [f"user{i}" for i in range(100)]


def doc(i):
    rnd = random.Random(i)
    return {"title": f"post number {i} " + "x" * rnd.randint(0, 40),
            "n": i, "owner": rnd.choice(OWNERS)}


class SeedError(Exception):
    pass


AUTH = None  # value of the Authorization header (--auth), or None


def post(url, payload, timeout=60):
    body = json.dumps(payload).encode()
    headers = {"Content-Type": "application/json"}
    if AUTH:
        headers["Authorization"] = AUTH
    req = urllib.request.Request(url, data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            raw = r.read()
            return r.status, raw
    except urllib.error.HTTPError as e:
        raw = e.read()
        raise SeedError(f"POST {url}\n  body: {body[:300]!r}\n  -> HTTP {e.code}: {raw[:600]!r}")


def seed_pocketbase(a):
    url = f"{a.base}/api/collections/{a.collection}/records"

    def create(i):
        err = None
        for attempt in range(5):  # retry on transient SQLITE_BUSY etc. (as the baseline)
            try:
                _, raw = post(url, doc(i), timeout=30)
                return json.loads(raw)["id"]
            except Exception as e:
                err = e
                time.sleep(0.1 * (attempt + 1))
        raise err

    if a.batch > 1:
        return seed_pocketbase_batch(a)
    with ThreadPoolExecutor(a.threads) as ex:
        return list(ex.map(create, range(a.n)))


def seed_pocketbase_batch(a):
    url = f"{a.base}/api/batch"
    path = f"/api/collections/{a.collection}/records"
    batches = [list(range(s, min(s + a.batch, a.n))) for s in range(0, a.n, a.batch)]

    def create(batch):
        # no retry: a batch is one transaction, but a timeout after commit would insert it twice
        _, raw = post(url, {"requests": [{"method": "POST", "url": path, "body": doc(i)} for i in batch]})
        try:
            ids = [r["body"]["id"] for r in json.loads(raw) if 200 <= r["status"] < 300]
        except Exception:
            raise SeedError(f"POST {url} (batch n={batch[0]}..{batch[-1]})\n  -> unexpected reply: {raw[:600]!r}")
        if len(ids) != len(batch):
            raise SeedError(f"POST {url}: sent {len(batch)} records, {len(ids)} created: {raw[:600]!r}")
        return ids

    out = []
    with ThreadPoolExecutor(a.threads) as ex:
        for ids in ex.map(create, batches):
            out.extend(ids)
    return out


def seed_lightbase(a):
    url = f"{a.base}{LB_PREFIX}/collections/{a.collection}/documents"
    batches = [list(range(s, min(s + a.batch, a.n))) for s in range(0, a.n, a.batch)]

    def create(batch):
        # no retry: a retried batch could insert its documents twice
        _, raw = post(url, {"data": [doc(i) for i in batch]})
        try:
            ids = json.loads(raw)["insertedIds"]
        except Exception:
            raise SeedError(f"POST {url} (batch n={batch[0]}..{batch[-1]})\n  -> unexpected reply: {raw[:600]!r}")
        if len(ids) != len(batch):
            raise SeedError(f"POST {url}: sent {len(batch)} docs, got {len(ids)} insertedIds: {raw[:600]!r}")
        return ids

    out = []
    with ThreadPoolExecutor(a.threads) as ex:
        for ids in ex.map(create, batches):
            out.extend(ids)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--api", choices=["pocketbase", "lightbase"], required=True)
    ap.add_argument("--base", required=True, help="http://127.0.0.1:PORT")
    ap.add_argument("--collection", default="posts")
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--threads", type=int, default=None,
                    help="client threads (default: 8 for pocketbase, 2 for lightbase)")
    ap.add_argument("--batch", type=int, default=None,
                    help="documents per request (default: 100 for lightbase, 1 for pocketbase; "
                         "> 1 for pocketbase uses its batch API)")
    ap.add_argument("--auth", default=None, help="Authorization header value (e.g. 'Bearer <server API key>')")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    global AUTH
    AUTH = a.auth
    if a.batch is None:
        a.batch = 100 if a.api == "lightbase" else 1
    if a.threads is None:
        a.threads = 8 if a.api == "pocketbase" and a.batch == 1 else 2
    t0 = time.time()
    try:
        ids = (seed_pocketbase if a.api == "pocketbase" else seed_lightbase)(a)
    except SeedError as e:
        print(f"seed failed:\n{e}", file=sys.stderr)
        return 1
    dt = time.time() - t0
    if len(set(ids)) != a.n:
        print(f"seed failed: {a.n} documents sent, {len(set(ids))} distinct ids back", file=sys.stderr)
        return 1
    with open(a.out, "w") as f:
        f.write("\n".join(ids) + "\n")
    print(f"seeded {len(ids)} {a.api} documents in {dt:.1f}s ({len(ids)/dt:.0f} docs/s, "
          f"{a.threads} threads{'' if a.batch == 1 else f', {a.batch} per request'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
