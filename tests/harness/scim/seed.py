#!/usr/bin/env python3
"""Create N SCIM Users on a running server, fast. Python standard library only.

Usage: seed.py BASE_URL TOKEN N [--mode bulk|post] [--concurrency C]
               [--batch B] [--prefix P] [--inactive-every K] [--start I]

  BASE_URL  the URL of the ready line, e.g. http://127.0.0.1:41234/v2
  --mode    bulk (default when /ServiceProviderConfig announces bulk): POST /Bulk
            with B operations per request (default and max: the server's
            bulk.maxOperations, and under bulk.maxPayloadSize), C requests at once;
            post: one POST /Users per user, C requests at once.
  --concurrency  parallel HTTP requests (default: 2 for bulk, 16 for post)
  --prefix  userName is "<prefix><i:06d>@example.test", externalId "<prefix>ext-<i>"
            (default prefix "seed-"); i runs from --start (default 1) to start+N-1.
  --inactive-every K  every K-th user is created with active=false (default 0: none)

Stdout: one JSON line {"created": N, "failed": F, "seconds": S, "mode": ..., ...}.
Exit code 0 only if every user was created. Errors go to stderr.
"""

import argparse
import http.client
import json
import sys
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor, as_completed

USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
BULK_REQUEST = "urn:ietf:params:scim:api:messages:2.0:BulkRequest"


def user(i: int, prefix: str, inactive_every: int) -> dict:
    return {
        "schemas": [USER_SCHEMA],
        "userName": f"{prefix}{i:06d}@example.test",
        "externalId": f"{prefix}ext-{i}",
        "name": {"givenName": f"Given{i}", "familyName": f"Family{i}"},
        "emails": [
            {"value": f"{prefix}{i:06d}@example.test", "type": "work", "primary": True}
        ],
        "active": not (inactive_every and i % inactive_every == 0),
    }


class Client:
    def __init__(self, base_url: str, token: str):
        url = urllib.parse.urlsplit(base_url.rstrip("/"))
        if url.scheme != "http":
            raise SystemExit("seed.py: only http:// base URLs are supported")
        self.host, self.port, self.path = url.hostname, url.port or 80, url.path
        self.headers = {
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/scim+json",
            "Accept": "application/scim+json",
        }

    def request(self, method: str, path: str, body=None, retries: int = 3):
        data = None if body is None else json.dumps(body).encode()
        for attempt in range(retries):
            conn = http.client.HTTPConnection(self.host, self.port, timeout=120)
            try:
                conn.request(method, self.path + path, body=data, headers=self.headers)
                resp = conn.getresponse()
                raw = resp.read()
                return resp.status, (json.loads(raw) if raw else None)
            except (ConnectionError, http.client.HTTPException):
                if attempt == retries - 1:
                    raise
                time.sleep(0.05 * (attempt + 1))
            finally:
                conn.close()


def seed_post(client, users, concurrency):
    failed = 0

    def one(u):
        status, body = client.request("POST", "/Users", u)
        if status != 201:
            print(f"seed.py: POST {u['userName']}: HTTP {status} {body}", file=sys.stderr)
            return False
        return True

    with ThreadPoolExecutor(concurrency) as pool:
        for fut in as_completed([pool.submit(one, u) for u in users]):
            failed += not fut.result()
    return failed


def seed_bulk(client, users, concurrency, batch, max_payload):
    def one(chunk, offset):
        ops = [
            {"method": "POST", "path": "/Users", "bulkId": f"u{offset + k}", "data": u}
            for k, u in enumerate(chunk)
        ]
        body = {"schemas": [BULK_REQUEST], "Operations": ops}
        if max_payload and len(json.dumps(body).encode()) > max_payload:
            raise SystemExit(f"seed.py: a batch of {len(chunk)} exceeds maxPayloadSize; lower --batch")
        status, resp = client.request("POST", "/Bulk", body)
        if status != 200:
            print(f"seed.py: POST /Bulk: HTTP {status} {resp}", file=sys.stderr)
            return len(chunk)
        bad = [op for op in resp.get("Operations", []) if str(op.get("status")) != "201"]
        for op in bad[:5]:
            print(f"seed.py: bulk op failed: {op}", file=sys.stderr)
        return len(bad) + (len(chunk) - len(resp.get("Operations", [])))

    chunks = [(users[i : i + batch], i) for i in range(0, len(users), batch)]
    failed = 0
    with ThreadPoolExecutor(concurrency) as pool:
        for fut in as_completed([pool.submit(one, c, o) for c, o in chunks]):
            failed += fut.result()
    return failed


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("base_url")
    p.add_argument("token")
    p.add_argument("n", type=int)
    p.add_argument("--mode", choices=["bulk", "post"])
    p.add_argument("--concurrency", type=int)
    p.add_argument("--batch", type=int)
    p.add_argument("--prefix", default="seed-")
    p.add_argument("--inactive-every", type=int, default=0)
    p.add_argument("--start", type=int, default=1)
    a = p.parse_args()

    client = Client(a.base_url, a.token)
    status, spc = client.request("GET", "/ServiceProviderConfig")
    if status != 200:
        print(f"seed.py: GET /ServiceProviderConfig: HTTP {status} {spc}", file=sys.stderr)
        return 1
    bulk = spc.get("bulk") or {}
    mode = a.mode or ("bulk" if bulk.get("supported") else "post")
    if mode == "bulk" and not bulk.get("supported"):
        print("seed.py: the server does not support bulk", file=sys.stderr)
        return 1
    max_ops = bulk.get("maxOperations") or 1000
    batch = min(a.batch or max_ops, max_ops)
    concurrency = a.concurrency or (2 if mode == "bulk" else 16)

    users = [user(i, a.prefix, a.inactive_every) for i in range(a.start, a.start + a.n)]
    t0 = time.monotonic()
    if mode == "bulk":
        failed = seed_bulk(client, users, concurrency, batch, bulk.get("maxPayloadSize"))
    else:
        failed = seed_post(client, users, concurrency)
    seconds = time.monotonic() - t0

    summary = {
        "created": a.n - failed,
        "failed": failed,
        "seconds": round(seconds, 3),
        "per_second": round((a.n - failed) / seconds, 1) if seconds else None,
        "mode": mode,
        "concurrency": concurrency,
    }
    if mode == "bulk":
        summary["batch"] = batch
    print(json.dumps(summary), flush=True)
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
