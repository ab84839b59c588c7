"""The gateway benchmark's load generator: a minimal HTTP/1.1 client on raw asyncio + uvloop.

Runs as its own process and takes one JSON command per line on stdin, answering one JSON line
on stdout (``bench/gateway.py`` drives it)::

    {"op": "closed", "url": ..., "path": ..., "body": ..., "conc": 16, "n": 20000, "warmup": 200,
     "max_s": 20, "expect": "chat.completion", "cpu_pids": [...]}
    {"op": "rate", "url": ..., "path": ..., "body": ..., "rate": 500, "duration": 60, "pool": 64,
     "expect": ..., "rss_pids": [...]}
    {"op": "quit"}

*closed*: ``conc`` keep-alive connections, each sending its next request when the previous
answer is complete, until ``n`` requests or ``max_s`` seconds; latency, time to the first body
byte (the first SSE chunk of a stream), throughput, and the CPU (``/proc``) of ``cpu_pids`` over
exactly the timed window. *rate*: open loop: request ``i`` is due at ``t0 + i / rate`` and goes out
on an idle keep-alive connection (a new one when all are busy); its latency counts from the due
time, so a slow target cannot hide its queueing (no coordinated omission). RSS of ``rss_pids`` is
sampled every second.

Why hand-written: no wrk/oha/hey on these machines, and an aiohttp client costs ~5x more CPU per
request, which on two shared cores would be taken from the target being measured.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
ns = time.perf_counter_ns


class HTTPError(Exception):
    """A failed exchange: connection lost, malformed answer, timeout."""


class Conn(asyncio.Protocol):
    """One keep-alive connection, one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.fut: asyncio.Future[tuple[int, int, int, bytes]] | None = None
        self.closed = False
        self._reset()

    def _reset(self) -> None:
        self.status = 0
        self.length = -1  # Content-Length, or -1 for chunked, -2 for read-until-close
        self.first = 0  # perf_counter_ns of the first body byte
        self.body = bytearray()
        self.close_after = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not an asyncio subclass

    def request(self, data: bytes) -> asyncio.Future[tuple[int, int, int, bytes]]:
        """Send ``data``; the future gives (status, first body byte ns, last byte ns, body).

        Both times are taken in ``data_received``, so the latency does not include the wait of
        the awaiting coroutine behind the other connections' callbacks.
        """
        assert self.transport is not None
        assert self.fut is None
        self._reset()
        self.fut = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return self.fut

    def data_received(self, data: bytes) -> None:
        now = ns()
        self.buf += data
        if self.fut is None:
            return
        try:
            self._parse(now)
        except (ValueError, IndexError) as e:
            self._fail(HTTPError(f"malformed answer: {e}"))

    def _parse(self, now: int) -> None:
        buf = self.buf
        if not self.status:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(buf[:end]).lower()
            del buf[: end + 4]
            self.status = int(head[9:12])
            i = head.find(b"\ncontent-length:")
            if i >= 0:
                j = head.find(b"\r", i)
                self.length = int(head[i + 16 : j if j >= 0 else len(head)])
            elif b"\ntransfer-encoding: chunked" in head:
                self.length = -1
            else:
                self.length = -2
            self.close_after = b"\nconnection: close" in head
        if buf and not self.first:
            self.first = now
        if self.length >= 0:
            if len(buf) >= self.length:
                self.body = buf[: self.length]
                del buf[: self.length]
                self._done(now)
        elif self.length == -1:
            while True:  # consume complete chunks
                eol = buf.find(b"\r\n")
                if eol < 0:
                    return
                size = int(bytes(buf[:eol]).split(b";", 1)[0], 16)
                if size == 0:
                    end = buf.find(b"\r\n\r\n", eol)  # after trailers, if any
                    if end < 0:
                        return
                    del buf[: end + 4]
                    self._done(now)
                    return
                if len(buf) < eol + 2 + size + 2:
                    return
                self.body += buf[eol + 2 : eol + 2 + size]
                del buf[: eol + 2 + size + 2]
        else:
            self.body += buf
            buf.clear()

    def _done(self, now: int) -> None:
        fut, self.fut = self.fut, None
        if fut is not None and not fut.done():
            fut.set_result((self.status, self.first or now, now, bytes(self.body)))
        if self.close_after and self.transport is not None:
            self.transport.close()
            self.closed = True

    def _fail(self, exc: Exception) -> None:
        fut, self.fut = self.fut, None
        if fut is not None and not fut.done():
            fut.set_exception(exc)
        if self.transport is not None:
            self.transport.close()
        self.closed = True

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.fut is not None and self.status and self.length == -2:
            self._done(ns())  # read-until-close body
        else:
            self._fail(HTTPError(f"connection lost: {exc or 'closed by peer'}"))


async def connect(host: str, port: int) -> Conn:
    _, conn = await asyncio.get_running_loop().create_connection(Conn, host, port)
    return conn


def build_request(url: str, path: str, body: str) -> tuple[str, int, bytes]:
    u = urlsplit(url)
    host, port = u.hostname or "127.0.0.1", u.port or 80
    data = body.encode()
    head = (
        f"POST {u.path.rstrip('/')}{path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        "Content-Type: application/json\r\nAccept: */*\r\nAuthorization: Bearer sk-bench\r\n"
        f"Content-Length: {len(data)}\r\n\r\n"
    )
    return host, port, head.encode() + data


def cpu_seconds(pid: int) -> float:
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_mib(pid: int) -> float:
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE / 2**20


def summary(lat_ns: list[int]) -> dict[str, float]:
    """Percentiles in ms (nearest rank)."""
    if not lat_ns:
        return {}
    s = sorted(lat_ns)
    n = len(s)

    def pct(q: float) -> float:
        return s[min(n - 1, max(0, int(q * n + 0.999999) - 1))] / 1e6

    return {"n": n, "p50": pct(0.5), "p90": pct(0.9), "p99": pct(0.99), "p999": pct(0.999),
            "max": s[-1] / 1e6, "mean": sum(s) / n / 1e6}  # fmt: skip


class Tally:
    def __init__(self, expect: bytes) -> None:
        self.expect = expect
        self.lat: list[int] = []
        self.ttfb: list[int] = []
        self.errors = 0
        self.statuses: dict[str, int] = {}
        self.samples: list[str] = []

    def ok(self, status: int, body: bytes) -> bool:
        if status == 200 and self.expect in body:
            return True
        self.errors += 1
        key = str(status) if status != 200 else "200 (unexpected body)"
        self.statuses[key] = self.statuses.get(key, 0) + 1
        if len(self.samples) < 3:
            self.samples.append(f"{status}: {body[:300]!r}")
        return False

    def error(self, exc: BaseException) -> None:
        self.errors += 1
        key = type(exc).__name__
        self.statuses[key] = self.statuses.get(key, 0) + 1
        if len(self.samples) < 3:
            self.samples.append(f"{key}: {exc}")

    def result(self) -> dict[str, Any]:
        return {"lat": summary(self.lat), "ttfb": summary(self.ttfb), "errors": self.errors,
                "statuses": self.statuses, "samples": self.samples}  # fmt: skip


async def closed_loop(cmd: dict[str, Any]) -> dict[str, Any]:
    host, port, req = build_request(cmd["url"], cmd["path"], cmd["body"])
    conc, n, timeout = int(cmd["conc"]), int(cmd["n"]), float(cmd.get("timeout", 30))
    tally = Tally(cmd.get("expect", "").encode())
    conns = [await connect(host, port) for _ in range(conc)]
    warm = Tally(tally.expect)
    per = max(1, int(cmd.get("warmup", 0)) // conc)

    async def warmup(c: Conn) -> None:
        for _ in range(per):
            status, _, _, body = await asyncio.wait_for(c.request(req), timeout)
            warm.ok(status, body)

    await asyncio.gather(*(warmup(c) for c in conns))
    if warm.errors:
        return {"error": f"warm-up failed: {warm.statuses} {warm.samples}"}
    pids = [int(p) for p in cmd.get("cpu_pids", [])]
    issued = 0
    deadline = ns() + int(float(cmd.get("max_s", 1e9)) * 1e9)

    async def worker(c: Conn) -> None:
        nonlocal issued
        while issued < n and ns() < deadline:
            issued += 1
            if c.closed:
                c = await connect(host, port)
            t = ns()
            try:
                status, first, end, body = await asyncio.wait_for(c.request(req), timeout)
            except (HTTPError, OSError, TimeoutError) as e:
                tally.error(e)
                c.closed = True
                continue
            if tally.ok(status, body):
                tally.lat.append(end - t)
                tally.ttfb.append(first - t)

    cpu0 = {p: cpu_seconds(p) for p in pids}
    self0 = time.process_time()
    t0 = ns()
    await asyncio.gather(*(worker(c) for c in conns))
    elapsed = (ns() - t0) / 1e9
    self_cpu = time.process_time() - self0
    cpu = {str(p): cpu_seconds(p) - cpu0[p] for p in pids}
    for c in conns:
        if c.transport is not None:
            c.transport.close()
    return {**tally.result(), "requests": issued, "elapsed": elapsed, "rate": issued / elapsed,
            "cpu": cpu, "self_cpu": self_cpu}  # fmt: skip


async def open_loop(cmd: dict[str, Any]) -> dict[str, Any]:
    host, port, req = build_request(cmd["url"], cmd["path"], cmd["body"])
    rate, duration = float(cmd["rate"]), float(cmd["duration"])
    timeout = float(cmd.get("timeout", 10))
    tally = Tally(cmd.get("expect", "").encode())
    idle = [await connect(host, port) for _ in range(int(cmd.get("pool", 64)))]
    for c in idle:  # warm every connection (and the target's path) once
        await asyncio.wait_for(c.request(req), timeout)
    pids = [int(p) for p in cmd.get("rss_pids", [])]
    rss: dict[str, list[float]] = {str(p): [] for p in pids}
    opened = 0
    total = int(rate * duration)
    interval = 1e9 / rate
    inflight: set[asyncio.Task[None]] = set()
    late = 0  # requests sent more than 1 ms after their due time (the generator's own lag)

    async def one(due: int) -> None:
        nonlocal opened
        c = idle.pop() if idle else None
        try:
            if c is None or c.closed:
                c = await connect(host, port)
                opened += 1
            status, _, end, body = await asyncio.wait_for(c.request(req), timeout)
        except (HTTPError, OSError, TimeoutError) as e:
            tally.error(e)
            return
        if tally.ok(status, body):
            tally.lat.append(end - due)
        if not c.closed:
            idle.append(c)

    async def sample() -> None:
        while True:
            for p in pids:
                rss[str(p)].append(rss_mib(p))
            await asyncio.sleep(1.0)

    sampler = asyncio.get_running_loop().create_task(sample())
    self0 = time.process_time()
    t0 = ns() + 10_000_000
    i = 0
    while i < total:
        now = ns()
        while i < total and t0 + int(i * interval) <= now:
            due = t0 + int(i * interval)
            if now - due > 1_000_000:
                late += 1
            task = asyncio.get_running_loop().create_task(one(due))
            inflight.add(task)
            task.add_done_callback(inflight.discard)
            i += 1
        if i < total:
            await asyncio.sleep(max(0.0, (t0 + int(i * interval) - ns()) / 1e9))
    sent_s = (ns() - t0) / 1e9
    if inflight:
        await asyncio.wait(set(inflight), timeout=timeout + 5)
    sampler.cancel()
    for p in pids:
        rss[str(p)].append(rss_mib(p))
    for c in idle:
        if c.transport is not None:
            c.transport.close()
    return {**tally.result(), "requests": total, "sent_s": sent_s, "new_connections": opened,
            "late_sends": late, "rss": rss, "self_cpu": time.process_time() - self0}  # fmt: skip


async def serve() -> None:
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line or not line.strip():
            return
        cmd = json.loads(line)
        if cmd["op"] == "quit":
            return
        try:
            out = await (closed_loop(cmd) if cmd["op"] == "closed" else open_loop(cmd))
        except (HTTPError, OSError, TimeoutError) as e:
            out = {"error": f"{type(e).__name__}: {e}"}
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    import uvloop

    print("READY", flush=True)
    uvloop.run(serve())
