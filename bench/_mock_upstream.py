"""A fast mock OpenAI upstream for the gateway benchmark: a raw asyncio Protocol on uvloop.

Run as its own process::

    .venv/bin/python bench/_mock_upstream.py --port 0 [--delay-ms 60]   # MOCK_DELAY_MS works too

It prints ``mock listening on http://127.0.0.1:PORT`` once bound. Routes (HTTP/1.1, keep-alive):

* ``POST /v1/chat/completions``: a canned ``chat.completion``; with ``"stream": true`` an SSE stream
  of ``chat.completion.chunk`` events (chunked transfer encoding), with a usage chunk when the
  request asks for ``stream_options.include_usage``, then ``data: [DONE]``.
* ``POST /v1/embeddings``: a canned embedding list.
* ``GET /healthz``, ``GET /v1/models``.
* ``POST /_mock/config`` with ``{"delay_ms": 60, "stream_interval_ms": 0, "stream_chunks": 16}``:
  changes the behaviour at run time, so one mock serves every phase of the benchmark.

No framework on purpose: the mock shares two cores with everything else, so each request must
cost it ~10 µs of CPU (the benchmark measures and reports this).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from typing import Any, cast

import orjson

CHAT = orjson.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1_767_000_000,
        "model": "mock-model",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "The quick brown fox jumps over the lazy dog."},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": 10, "total_tokens": 22},
        "system_fingerprint": "fp_bench",
    }
)
EMBEDDINGS = orjson.dumps(
    {
        "object": "list",
        "data": [{"object": "embedding", "index": 0, "embedding": [round(i / 64, 4) for i in range(64)]}],
        "model": "mock-embedding",
        "usage": {"prompt_tokens": 8, "total_tokens": 8},
    }
)
MODELS = orjson.dumps(
    {"object": "list", "data": [{"id": "mock-model", "object": "model", "owned_by": "bench"}]}
)
WORDS = ("The", "quick", "brown", "fox", "jumps", "over", "the", "lazy", "dog", "and", "then", "runs")


def _response(status: str, ctype: bytes, body: bytes, close: bool) -> bytes:
    conn = b"Connection: close\r\n" if close else b""
    return (
        b"HTTP/1.1 " + status.encode() + b"\r\nContent-Type: " + ctype + b"\r\nContent-Length: "
        + str(len(body)).encode() + b"\r\n" + conn + b"\r\n" + body
    )  # fmt: skip


def _chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def _sse(obj: dict[str, Any]) -> bytes:
    return _chunk(b"data: " + orjson.dumps(obj) + b"\n\n")


def stream_events(chunks: int, include_usage: bool) -> list[bytes]:
    """The HTTP chunks of one streamed chat completion (headers first, terminator last)."""
    base = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1_767_000_000,
            "model": "mock-model", "system_fingerprint": "fp_bench"}  # fmt: skip

    def event(delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return _sse({**base, "choices": [choice]})

    out = [
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n" + event({"role": "assistant", "content": ""})
    ]
    out += [event({"content": WORDS[i % len(WORDS)] + " "}) for i in range(chunks)]
    out.append(event({}, "stop"))
    if include_usage:
        usage = {"prompt_tokens": 12, "completion_tokens": chunks, "total_tokens": 12 + chunks}
        out.append(_sse({**base, "choices": [], "usage": usage}))
    out.append(_chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n")
    return out


class Config:
    """Run-time settings, shared by every connection."""

    def __init__(self, delay_ms: float) -> None:
        self.delay = delay_ms / 1000
        self.stream_interval = 0.0
        self.stream_chunks = 16
        self.requests = 0
        self._streams: dict[bool, list[bytes]] = {}

    def stream(self, include_usage: bool) -> list[bytes]:
        if include_usage not in self._streams:
            self._streams[include_usage] = stream_events(self.stream_chunks, include_usage)
        return self._streams[include_usage]

    def update(self, body: dict[str, Any]) -> bytes:
        if "delay_ms" in body:
            self.delay = float(body["delay_ms"]) / 1000
        if "stream_interval_ms" in body:
            self.stream_interval = float(body["stream_interval_ms"]) / 1000
        if "stream_chunks" in body:
            self.stream_chunks = int(body["stream_chunks"])
            self._streams.clear()
        return orjson.dumps(
            {
                "delay_ms": self.delay * 1000,
                "stream_interval_ms": self.stream_interval * 1000,
                "stream_chunks": self.stream_chunks,
                "requests": self.requests,
            }
        )


class MockProtocol(asyncio.Protocol):
    """One keep-alive connection: parse requests from a buffer, answer from canned bytes."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None
        self.loop = asyncio.get_running_loop()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not an asyncio subclass

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while self._one():
            pass

    def _one(self) -> bool:
        """Handle one complete request at the head of the buffer; False when more bytes are needed."""
        buf = self.buf
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            return False
        head = bytes(buf[:end]).lower()
        start = end + 4
        i = head.find(b"\ncontent-length:")
        if i >= 0:
            j = head.find(b"\r", i + 16)
            size = int(head[i + 16 : j if j >= 0 else len(head)])
            if len(buf) < start + size:
                return False
            body = bytes(buf[start : start + size])
            del buf[: start + size]
        elif b"\ntransfer-encoding: chunked" in head:  # a client may stream its request body
            got = _dechunk(buf, start)
            if got is None:
                return False
            body, used = got
            del buf[:used]
        else:
            body = b""
            del buf[:start]
        line_end = head.find(b"\r\n")
        method, _, rest = head[: line_end if line_end >= 0 else len(head)].partition(b" ")
        path = rest.split(b" ", 1)[0].split(b"?", 1)[0]
        close = b"\nconnection: close" in head or rest.endswith(b"http/1.0")
        self._route(method, path, body, close)
        return not close

    def _route(self, method: bytes, path: bytes, body: bytes, close: bool) -> None:
        cfg = self.cfg
        cfg.requests += 1
        if method == b"post" and path.endswith(b"/chat/completions"):
            if b'"stream"' in body:  # only parse the body when it may ask for a stream
                try:
                    req = orjson.loads(body)
                except orjson.JSONDecodeError:
                    bad = _response("400 Bad Request", b"application/json", b'{"error":"json"}', close)
                    self._send(bad, close)
                    return
                if req.get("stream") is True:
                    usage = bool((req.get("stream_options") or {}).get("include_usage"))
                    self._stream(cfg.stream(usage), close)
                    return
            self._send(_response("200 OK", b"application/json", CHAT, close), close)
        elif method == b"post" and path.endswith(b"/embeddings"):
            self._send(_response("200 OK", b"application/json", EMBEDDINGS, close), close)
        elif method == b"get" and path in (b"/healthz", b"/health"):
            self._send(_response("200 OK", b"text/plain", b"ok", close), close, delay=False)
        elif method == b"get" and path.endswith(b"/models"):
            self._send(_response("200 OK", b"application/json", MODELS, close), close, delay=False)
        elif method == b"post" and path == b"/_mock/config":
            answer = cfg.update(orjson.loads(body or b"{}"))
            self._send(_response("200 OK", b"application/json", answer, close), close, delay=False)
        else:
            missing = _response("404 Not Found", b"application/json", b'{"error":"not found"}', close)
            self._send(missing, close)

    def _send(self, data: bytes, close: bool = False, delay: bool = True) -> None:
        if delay and self.cfg.delay > 0:
            self.loop.call_later(self.cfg.delay, self._write, data, close)
        else:
            self._write(data, close)

    def _write(self, data: bytes, close: bool) -> None:
        t = self.transport
        if t is None or t.is_closing():  # the client went away while we slept
            return
        t.write(data)
        if close:
            t.close()

    def _stream(self, parts: list[bytes], close: bool) -> None:
        step = self.cfg.stream_interval
        if step <= 0:  # one write: the cheapest stream, so the figures show the proxy's cost
            self._send(b"".join(parts), close)
            return
        first = self.cfg.delay
        for k, part in enumerate(parts):
            last = k == len(parts) - 1
            self.loop.call_later(first + k * step, self._write, part, close and last)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


def _dechunk(buf: bytearray, pos: int) -> tuple[bytes, int] | None:
    """Decode a chunked body starting at ``pos``: (body, end offset), or None if incomplete."""
    out = bytearray()
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            return None
        size = int(bytes(buf[pos:eol]).split(b";", 1)[0], 16)
        if size == 0:
            end = buf.find(b"\r\n\r\n", eol)  # no trailers expected: the terminating blank line
            return (bytes(out), end + 4) if end >= 0 else None
        if len(buf) < eol + 2 + size + 2:
            return None
        out += buf[eol + 2 : eol + 2 + size]
        pos = eol + 2 + size + 2


async def serve(port: int, delay_ms: float) -> None:
    loop = asyncio.get_running_loop()
    cfg = Config(delay_ms)
    server = await loop.create_server(lambda: MockProtocol(cfg), "127.0.0.1", port, backlog=1024)
    bound = server.sockets[0].getsockname()[1]
    print(f"mock listening on http://127.0.0.1:{bound}", flush=True)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    await stop.wait()
    server.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="fast mock OpenAI upstream (bench)")
    ap.add_argument("--port", type=int, default=0, help="0 picks a free port (printed)")
    ap.add_argument("--delay-ms", type=float, default=float(os.environ.get("MOCK_DELAY_MS", "0")))
    args = ap.parse_args(argv)
    import uvloop

    uvloop.run(serve(args.port, args.delay_ms))
    return 0


if __name__ == "__main__":
    sys.exit(main())
