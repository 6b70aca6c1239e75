"""Load on the HTTP API: tills posting purchases over keep-alive connections, some retried.

Each connection is one till with its own key; it posts new purchases one after another and,
for about one request in ten, sends its previous request again with the same
Idempotency-Key (a till that timed out and retried). Afterwards the database is checked:
every purchase answered 201 is stored once and earned exactly once, with the points the
answer gave. The client speaks HTTP/1.1 over asyncio streams (no HTTP library): on two
cores the load generator must cost the server as little as possible.

Run by ``python -m loyalty bench --members N --steps api`` (see loyalty.devtools.bench) or
on its own against a running server::

    python -m loyalty.devtools.api_load --url http://127.0.0.1:8000 --keys k1,k2 --members M1,M2 --seconds 30
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

__all__ = ["LoadResult", "run_load"]

REQUEST_TIMEOUT_S = 30.0


@dataclass
class LoadResult:
    seconds: float
    latencies_ms: list[float] = field(default_factory=list)
    sent_at_s: list[float] = field(default_factory=list)  # when each request was sent, from the run's start
    statuses: dict[int, int] = field(default_factory=dict)
    replayed: int = 0
    retries_sent: int = 0
    earned: dict[str, int] = field(default_factory=dict)  # purchase id -> points its 201 answer gave
    errors: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        ordered = sorted(self.latencies_ms)

        def pct(p: float) -> float | None:
            return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))], 1) if ordered else None

        requests = len(ordered)
        slowest = max(range(requests), key=self.latencies_ms.__getitem__) if requests else None
        return {
            "seconds": round(self.seconds, 2),
            "requests": requests,
            "requests_per_second": round(requests / self.seconds, 1) if self.seconds else None,
            "purchases": len(self.earned),
            "purchases_per_second": round(len(self.earned) / self.seconds, 1) if self.seconds else None,
            "retries_sent": self.retries_sent,
            "replayed": self.replayed,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "server_errors": sum(v for k, v in self.statuses.items() if k >= 500),
            "latency_ms": {"p50": pct(0.50), "p95": pct(0.95), "p99": pct(0.99), "max": round(ordered[-1], 1) if ordered else None},
            # When the slowest request was sent, in seconds from the start of the run.
            "slowest_sent_at_s": round(self.sent_at_s[slowest], 2) if slowest is not None else None,
            "client_errors": self.errors[:5],
        }


async def _read_answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("the server closed the connection")
    status = int(status_line.split()[1])
    headers: dict[str, str] = {}
    while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return status, headers, body


async def _till(
    index: int,
    host: str,
    port: int,
    key: str,
    members: list[str],
    deadline: float,
    retry_share: float,
    result: LoadResult,
    rng: random.Random,
    prefix: str,
    run_started: float,
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    previous: bytes | None = None
    n = 0
    try:
        while time.monotonic() < deadline:
            if previous is not None and rng.random() < retry_share:
                request, retry = previous, True
                result.retries_sent += 1
            else:
                n += 1
                purchase = f"{prefix}{index:03d}-{n:07d}"
                at = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
                body = json.dumps(
                    {
                        "purchase_id": purchase,
                        "member_id": rng.choice(members),
                        "occurred_at": at,
                        "amount": round(rng.uniform(3, 120), 2),
                        "channel": "store",
                    }
                ).encode()
                request = (
                    f"POST /v1/purchases HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {key}\r\n"
                    f"Idempotency-Key: {prefix}{index}-{n}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
                ).encode() + body
                previous, retry = request, False
            started = time.perf_counter()
            result.sent_at_s.append(time.monotonic() - run_started)
            writer.write(request)
            await writer.drain()
            status, headers, answer = await asyncio.wait_for(_read_answer(reader), REQUEST_TIMEOUT_S)
            result.latencies_ms.append((time.perf_counter() - started) * 1000)
            result.statuses[status] = result.statuses.get(status, 0) + 1
            if headers.get("idempotent-replayed") == "true":
                result.replayed += 1
            if status == 201 and not retry:
                payload = json.loads(answer)
                result.earned[payload["purchase_id"]] = payload["points_earned"]
            elif status >= 500 or status not in (200, 201):
                result.errors.append(f"{status}: {answer[:200]!r}")
    finally:
        writer.close()


async def _run(url: str, keys: list[str], members: list[str], seconds: float, retry_share: float, seed: int, prefix: str) -> LoadResult:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    result = LoadResult(seconds=0.0)
    started = time.monotonic()
    deadline = started + seconds
    tills = [
        _till(i, host, port, key, members, deadline, retry_share, result, random.Random(seed + i), prefix, started) for i, key in enumerate(keys)
    ]
    outcomes = await asyncio.gather(*tills, return_exceptions=True)
    result.seconds = time.monotonic() - started
    result.errors.extend(f"connection: {o!r}" for o in outcomes if isinstance(o, BaseException))
    return result


def run_load(
    url: str, *, keys: list[str], members: list[str], seconds: float = 30.0, retry_share: float = 0.1, seed: int = 7, prefix: str | None = None
) -> LoadResult:
    """One keep-alive connection per key, posting purchases for ``seconds``; see the module notes.

    Purchase ids are ``<prefix><till>-<n>`` (default prefix ``LOAD-<unix time>-``), new on every run."""
    prefix = prefix if prefix is not None else f"LOAD-{time.time():.0f}-"
    return asyncio.run(_run(url, keys, members, seconds, retry_share, seed, prefix))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loyalty.devtools.api_load", description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--keys", required=True, help="comma-separated API keys with purchases:write, one connection each")
    parser.add_argument("--members", required=True, help="comma-separated member ids")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--retry-share", type=float, default=0.1)
    args = parser.parse_args(argv)
    result = run_load(args.url, keys=args.keys.split(","), members=args.members.split(","), seconds=args.seconds, retry_share=args.retry_share)
    print(json.dumps(result.summary()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
