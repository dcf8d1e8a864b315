"""A minimal keep-alive HTTP/1.1 load generator on raw asyncio streams.

Hand-written on purpose: the generator shares two cores with the server it measures, so it must
cost far less per request than the server does (aiohttp's client costs about as much as its server,
which would flatten every ratio). It speaks just enough HTTP for our own JSON endpoints.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

_LENGTH = re.compile(rb"content-length:\s*(\d+)", re.I)
_STATUS = re.compile(rb"^HTTP/1\.1 (\d{3})")


@dataclass
class Result:
    requests: int = 0
    seconds: float = 0.0
    statuses: dict[int, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile(self, p: float) -> float:
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


def request_bytes(method: str, path: str, headers: dict[str, str] | None = None, body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def run_load(
    port: int,
    make_request: Callable[[int], bytes],
    *,
    concurrency: int,
    seconds: float | None = None,
    total: int | None = None,
) -> Result:
    """Send requests on ``concurrency`` connections until ``seconds`` pass or ``total`` are sent."""
    result = Result()
    counter = iter(range(total if total is not None else 10**12))
    started = time.perf_counter()
    deadline = started + (seconds if seconds is not None else 10**9)

    async def connection() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for i in counter:
                if time.perf_counter() >= deadline:
                    break
                t0 = time.perf_counter()
                writer.write(make_request(i))
                head = await reader.readuntil(b"\r\n\r\n")
                length = _LENGTH.search(head)
                await reader.readexactly(int(length.group(1)) if length else 0)
                status_match = _STATUS.match(head)
                status = int(status_match.group(1)) if status_match else 0
                result.statuses[status] = result.statuses.get(status, 0) + 1
                result.latencies.append(time.perf_counter() - t0)
                result.requests += 1
        finally:
            writer.close()

    await asyncio.gather(*(connection() for _ in range(concurrency)))
    result.seconds = time.perf_counter() - started
    return result
