"""What a token cache hit costs, in process and without the network's noise: glimpse's keystone
mode (``KeystoneTokens.principal`` on a token already in its cache) against noauth
(``TrustedHeaders.principal``), each building the request's Principal from the same request
but for its identity headers. Rounds alternate A B A B; the figure is the median per call.

    .venv/bin/python bench/keystone_hit.py [--calls 100000] [--rounds 7]

Complements glimpse_bench.py's head_rps with --keystone-token-b, which measures the same cost
end to end over HTTP, where a shared machine's noise can be larger than the cost itself.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import secrets
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from starlette.requests import Request

from glimpse.api.auth import TrustedHeaders
from glimpse.api.keystone_auth import KeystoneTokens
from glimpse.api.token_cache import TokenCache

# A fernet token's length and alphabet, as Keystone 30 issues them.
TOKEN = "gAAAAA" + secrets.token_urlsafe(135)
COMMON = [(b"host", b"127.0.0.1:9292"), (b"user-agent", b"glimpse-bench"),
          (b"accept", b"*/*"), (b"connection", b"keep-alive")]


class Validator:
    """Keystone's answer for TOKEN, valid for an hour; counts the calls (one expected)."""

    def __init__(self) -> None:
        self.calls = 0
        expires = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
        self.token: dict[str, Any] = {
            "user": {"id": "u" * 32, "domain": {"id": "default"}},
            "project": {"id": "p" * 32, "domain": {"id": "default"}},
            "roles": [{"name": "admin"}, {"name": "member"}, {"name": "reader"}],
            "expires_at": expires.strftime("%Y-%m-%dT%H:%M:%S.000000Z"),
            "audit_ids": ["a" * 22],
        }

    def validate(self, token: str, allow_expired: bool = False) -> dict[str, Any] | None:
        self.calls += 1
        return self.token if token == TOKEN else None


def scope(identity: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {"type": "http", "method": "GET", "path": "/v2/images/x", "raw_path": b"/v2/images/x",
            "query_string": b"", "headers": COMMON + identity, "http_version": "1.1"}


async def per_call_us(principal: Callable[[Request], Awaitable[object]],
                      request_scope: dict[str, Any], calls: int) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        # A new Request each time, as each HTTP request gets one (its headers parsed anew).
        await principal(Request(request_scope))
    return (time.perf_counter() - started) / calls * 1e6


async def main(calls: int, rounds: int) -> None:
    validator = Validator()
    keystone = KeystoneTokens(validator, TokenCache(300, 10_000), "http://127.0.0.1:5000")
    noauth = TrustedHeaders()
    keystone_scope = scope([(b"x-auth-token", TOKEN.encode())])
    noauth_scope = scope([(b"x-tenant-id", b"p" * 32), (b"x-user-id", b"u" * 32),
                          (b"x-roles", b"admin,member,reader")])
    await keystone.principal(Request(keystone_scope))  # the one miss: into the cache
    async def headers_only(request: Request) -> object:
        return request.headers  # what any mode pays: the Request and its parsed headers

    kinds = {"request and headers only": (headers_only, keystone_scope),
             "noauth (trusted headers)": (noauth.principal, noauth_scope),
             "keystone (cache hit)": (keystone.principal, keystone_scope)}
    samples: dict[str, list[float]] = {name: [] for name in kinds}
    for _ in range(rounds):
        for name, (principal, request_scope) in kinds.items():
            samples[name].append(await per_call_us(principal, request_scope, calls))
    if validator.calls != 1:
        raise SystemExit(f"expected one validation, Keystone was asked {validator.calls} times")
    base, a, b = (statistics.median(values) for values in samples.values())
    print(f"# {rounds} rounds of {calls} calls each, interleaved; median [min-max] us per call")
    for name, values in samples.items():
        print(f"{name:<28} {statistics.median(values):7.2f} [{min(values):.2f}-{max(values):.2f}]")
    print(f"the cache hit itself         {b - base:7.2f} us (keystone less headers only)")
    print(f"keystone mode adds           {b - a:7.2f} us per request to noauth's "
          "(goal: at most 100 us); Keystone was asked once")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    asyncio.run(main(args.calls, args.rounds))
