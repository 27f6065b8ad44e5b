#!/usr/bin/env python3
"""Mints a Lightbase custom-sign-in ticket (stdlib only).

A ticket is an HS256 JWT {uid, env, iat, exp} signed with the env's ticket key, which an admin
downloads from GET /admin/v1/envs/{env}/ticket-key (the "key" field, base64url). Run this in your
own backend after you have authenticated the user, and hand the ticket to the app, which calls
auth.signInWithCustomTicket(() => ticket).

    python3 scripts/mint-ticket.py --key=KEY --env ENV --uid UID [--ttl 600]
(`--key=KEY` with `=`: a base64url key may start with `-`, which would otherwise read as an option)
"""
import argparse
import base64
import hashlib
import hmac
import json
import re
import sys
import time


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def mint(key: bytes, env: str, uid: str, ttl: int = 600) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", uid):
        raise ValueError("uid must be 1-64 of A-Za-z0-9_-")
    if not 1 <= ttl <= 600:
        raise ValueError("ttl must be 1-600 seconds")
    now = int(time.time())
    header = {"alg": "HS256", "typ": "JWT"}
    claims = {"uid": uid, "env": env, "iat": now, "exp": now + ttl}
    signing_input = b64url(json.dumps(header, separators=(",", ":")).encode()) + "." + \
        b64url(json.dumps(claims, separators=(",", ":")).encode())
    sig = hmac.new(key, signing_input.encode("ascii"), hashlib.sha256).digest()
    return signing_input + "." + b64url(sig)


def main() -> int:
    p = argparse.ArgumentParser(description="Mint a Lightbase custom sign-in ticket")
    p.add_argument("--key", required=True, help="the env's ticket key (base64url, from the admin API)")
    p.add_argument("--env", required=True, help="the env the ticket signs in to")
    p.add_argument("--uid", required=True, help="your user id: 1-64 of A-Za-z0-9_-")
    p.add_argument("--ttl", type=int, default=600, help="lifetime in seconds (at most 600)")
    a = p.parse_args()
    try:
        key = b64url_decode(a.key.strip())
        print(mint(key, a.env, a.uid, a.ttl))
    except ValueError as e:
        print(f"mint-ticket: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
