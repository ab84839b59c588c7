"""A minimal HTTP/1.1 server on raw asyncio, the transport under the mock LLM upstream.

Why not aiohttp or another framework: the mock is the floor every benchmark is measured
against, so it must cost about 10 us of CPU per request. This module does only what the
mock needs: keep-alive, pipelining (answered in order), ``Content-Length`` and chunked
request bodies, ``Expect: 100-continue``, and three ways to answer:

* :class:`Reply` -- one body, optionally delayed or cut short (then the connection closes);
* :class:`StreamReply` -- chunked server-sent events, optionally spaced in time or cut short;
* :data:`Action.HANG` / :data:`Action.DROP` -- never answer, or close without answering.

Delays use ``loop.call_later`` timers owned by the connection instead of tasks, so closing
a connection (or the server) cancels everything it had pending: nothing can outlive stop.
"""

from __future__ import annotations

import asyncio
import enum
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import cast

__all__ = ["Action", "Handler", "HttpRequest", "HttpServer", "Reply", "StreamReply", "header_lines"]

# Requests larger than this are refused (413) so a runaway client cannot exhaust memory.
MAX_BODY_BYTES = 32 * 1024 * 1024
MAX_HEAD_BYTES = 64 * 1024

_REASONS: dict[int, bytes] = {s.value: s.phrase.encode("ascii") for s in HTTPStatus}
_REASONS[529] = b"Site is overloaded"  # Anthropic's "overloaded"; not in the IANA registry.


def header_lines(*pairs: tuple[str, str]) -> bytes:
    """Encode response headers for :class:`Reply` / :class:`StreamReply` (CRLF-terminated lines)."""
    return "".join(f"{name}: {value}\r\n" for name, value in pairs).encode("latin-1")


class HttpRequest:
    """One parsed request.

    Header names are matched case-insensitively. :meth:`header` looks one up without
    parsing the others -- the per-request path only needs a few -- and :attr:`headers`
    parses them all (lower-case names, repeats joined by ", ") the first time it is read.
    """

    __slots__ = ("_headers", "_lower", "body", "head", "method", "path", "query")

    def __init__(self, method: str, path: str, query: str, head: str, body: bytes) -> None:
        self.method = method
        self.path = path
        self.query = query
        self.head = head
        """The request line and header lines, CRLF-separated, as received."""
        self.body = body
        self._lower = head.lower()  # latin-1 lower-casing keeps offsets aligned with head
        self._headers: dict[str, str] | None = None

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (give it lower-case), or None."""
        at = self._lower.find("\r\n" + name + ":")
        if at < 0:
            return None
        start = at + len(name) + 3
        end = self.head.find("\r\n", start)
        return self.head[start : end if end >= 0 else len(self.head)].strip()

    @property
    def headers(self) -> dict[str, str]:
        """All headers: lower-case names, repeated headers joined by ", "."""
        if self._headers is None:
            headers: dict[str, str] = {}
            for line in self.head.split("\r\n")[1:]:
                name, _, value = line.partition(":")
                name, value = name.strip().lower(), value.strip()
                headers[name] = f"{headers[name]}, {value}" if name in headers else value
            self._headers = headers
        return self._headers

    def __repr__(self) -> str:
        return f"HttpRequest({self.method} {self.path})"


@dataclass(slots=True)
class Reply:
    """A complete response body.

    ``delay`` (seconds) postpones the whole response; ``truncate`` announces the full
    ``Content-Length`` but sends only half the body and closes, as a dying upstream would.
    """

    status: int
    headers: bytes
    """Extra header lines (see :func:`header_lines`); framing headers are added here."""
    body: bytes
    delay: float = 0.0
    truncate: bool = False


@dataclass(slots=True)
class StreamReply:
    """A chunked response whose chunks are the given server-sent events, in order.

    The first event goes out after ``delay`` seconds, each further one after ``interval``.
    ``truncate_after`` closes the connection after that many events without the final
    zero-length chunk, so clients see an incomplete body rather than a clean end.
    """

    status: int
    headers: bytes
    """Extra header lines (see :func:`header_lines`); framing headers are added here."""
    events: list[bytes]
    delay: float = 0.0
    interval: float = 0.0
    truncate_after: int | None = None


class Action(enum.Enum):
    """Answers that are not responses."""

    HANG = "hang"
    """Keep the connection open and never answer, until the client or the server closes it."""
    DROP = "drop"
    """Close the connection at once without answering."""


Handler = Callable[[HttpRequest], "Reply | StreamReply | Action"]


def _head(status: int, headers: bytes, framing: bytes) -> bytes:
    return b"HTTP/1.1 %d %s\r\n%s%s" % (status, _REASONS.get(status, b"Unknown"), headers, framing)


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


class _BadRequestError(Exception):
    """The bytes on the wire are not an HTTP/1.1 request this server understands."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(slots=True)
class _Outgoing:
    """Segments still to write for the current response, and what to do after the last."""

    segments: deque[bytes]
    interval: float
    close: bool


class _Connection(asyncio.Protocol):
    """One client connection: parses requests, answers them strictly in order."""

    def __init__(self, server: HttpServer) -> None:
        self._server = server
        self._handler = server.handler
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._buf = bytearray()
        # True while a response is in flight (delayed, streaming, hung); pipelined
        # requests wait in the buffer until it is done.
        self._busy = False
        self._timer: asyncio.TimerHandle | None = None
        self._out: _Outgoing | None = None
        self._continue_sent = False

    # -- asyncio.Protocol -------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        self._server.connections.add(self)

    def data_received(self, data: bytes) -> None:
        self._buf += data
        if not self._busy:
            self._process()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()
        self._transport = None
        self._busy = True  # nothing more will be parsed or written
        self._server.connections.discard(self)

    # -- control ----------------------------------------------------------------------

    def abort(self) -> None:
        """Cancel any pending write and drop the connection (server shutdown)."""
        self._cancel_timer()
        if self._transport is not None:
            self._transport.abort()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._out = None

    # -- parsing ----------------------------------------------------------------------

    def _process(self) -> None:
        while not self._busy and self._transport is not None and self._buf:
            try:
                parsed = self._parse()
            except _BadRequestError as err:
                body = str(err).encode()
                framing = b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body)
                self._transport.write(_head(err.status, b"content-type: text/plain\r\n", framing) + body)
                self._transport.close()
                return
            if parsed is None:
                return
            request, keep_alive = parsed
            self._answer(self._handler(request), keep_alive)

    def _parse(self) -> tuple[HttpRequest, bool] | None:
        buf = self._buf
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > MAX_HEAD_BYTES:
                raise _BadRequestError(431, "request head too large")
            return None
        head = buf[:end].decode("latin-1")
        line_end = head.find("\r\n")
        parts = head[: line_end if line_end >= 0 else len(head)].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            raise _BadRequestError(400, "malformed request line")
        method, target, version = parts
        path, _, query = target.partition("?")
        request = HttpRequest(method, path, query, head, b"")

        start = end + 4
        if "chunked" in (request.header("transfer-encoding") or "").lower():
            decoded = _decode_chunked(buf, start)
            if decoded is None:
                self._maybe_continue(request)
                return None
            request.body, stop = decoded
        else:
            try:
                length = int(request.header("content-length") or 0)
            except ValueError:
                raise _BadRequestError(400, "bad content-length") from None
            if length < 0 or length > MAX_BODY_BYTES:
                raise _BadRequestError(413, "request body too large for the mock upstream")
            stop = start + length
            if len(buf) < stop:
                self._maybe_continue(request)
                return None
            request.body = bytes(buf[start:stop])
        del buf[:stop]
        self._continue_sent = False

        conn = (request.header("connection") or "").lower()
        keep_alive = "close" not in conn if version == "HTTP/1.1" else "keep-alive" in conn
        return request, keep_alive

    def _maybe_continue(self, request: HttpRequest) -> None:
        # Clients that sent "Expect: 100-continue" wait for this before sending the body.
        if not self._continue_sent and (request.header("expect") or "").lower() == "100-continue":
            self._continue_sent = True
            if self._transport is not None:
                self._transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    # -- answering --------------------------------------------------------------------

    def _answer(self, reply: Reply | StreamReply | Action, keep_alive: bool) -> None:
        transport = self._transport
        if transport is None:
            return
        if reply is Action.HANG:
            self._busy = True  # later input is buffered and never answered
            return
        if reply is Action.DROP:
            self._busy = True
            transport.close()
            return
        segments, close, delay, interval = _frame(reply, keep_alive)
        if delay <= 0 and (interval <= 0 or len(segments) == 1):
            # Fast path: the whole response in one write, no timers.
            transport.write(b"".join(segments))
            if close:
                self._busy = True
                transport.close()
            return
        self._busy = True
        self._out = _Outgoing(deque(segments), interval, close)
        if delay > 0:
            self._timer = self._loop.call_later(delay, self._write_next)
        else:
            self._write_next(resume=False)

    def _write_next(self, resume: bool = True) -> None:
        self._timer = None
        out, transport = self._out, self._transport
        if out is None or transport is None:
            return
        if out.interval > 0:
            transport.write(out.segments.popleft())
            if out.segments:
                self._timer = self._loop.call_later(out.interval, self._write_next)
                return
        else:
            transport.write(b"".join(out.segments))
        self._out = None
        if out.close:
            transport.close()
            return
        self._busy = False
        if resume:
            self._process()


def _frame(reply: Reply | StreamReply, keep_alive: bool) -> tuple[list[bytes], bool, float, float]:
    """Serialise a reply: (write segments, close afterwards?, delay, interval)."""
    conn_header = b"" if keep_alive else b"connection: close\r\n"
    if isinstance(reply, Reply):
        body = reply.body
        head = _head(reply.status, reply.headers, b"content-length: %d\r\n%s\r\n" % (len(body), conn_header))
        if reply.truncate:
            return [head + body[: len(body) // 2]], True, reply.delay, 0.0
        return [head + body], not keep_alive, reply.delay, 0.0
    head = _head(reply.status, reply.headers, b"transfer-encoding: chunked\r\n%s\r\n" % conn_header)
    events = reply.events
    close = not keep_alive
    if reply.truncate_after is not None:
        events = events[: reply.truncate_after]
        close = True
    if reply.interval <= 0 and events:
        # Not spaced in time: one chunk holding every event is cheaper and parses the same.
        events = [b"".join(events)]
    segments = [_chunk(e) for e in events]
    if reply.truncate_after is None:
        segments.append(b"0\r\n\r\n")
    if segments:
        segments[0] = head + segments[0]
    else:
        segments = [head]
    return segments, close, reply.delay, reply.interval


def _decode_chunked(buf: bytearray, pos: int) -> tuple[bytes, int] | None:
    """Decode a chunked body starting at ``pos``: (body, end offset), or None if incomplete."""
    parts: list[bytes] = []
    total = 0
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            return None
        try:
            size = int(buf[pos:eol].split(b";", 1)[0], 16)
        except ValueError:
            raise _BadRequestError(400, "bad chunk size") from None
        pos = eol + 2
        if size == 0:
            # Skip optional trailer lines up to the empty line that ends the message.
            while True:
                eol = buf.find(b"\r\n", pos)
                if eol < 0:
                    return None
                if eol == pos:
                    return b"".join(parts), eol + 2
                pos = eol + 2
        total += size
        if total > MAX_BODY_BYTES:
            raise _BadRequestError(413, "request body too large for the mock upstream")
        if len(buf) < pos + size + 2:
            return None
        parts.append(bytes(buf[pos : pos + size]))
        pos += size + 2


@dataclass(eq=False)
class HttpServer:
    """Serves ``handler`` on the running loop; ``close()`` drops every connection."""

    handler: Handler
    connections: set[_Connection] = field(default_factory=set)
    _server: asyncio.Server | None = None

    async def start(self, host: str, port: int) -> int:
        """Listen on ``host:port`` (0 picks a free port) and return the bound port."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Connection(self), host, port, backlog=1024)
        sockname = self._server.sockets[0].getsockname()
        return int(sockname[1])

    async def close(self) -> None:
        """Stop listening, abort open connections (hung ones included) and wait until closed."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for conn in list(self.connections):
            conn.abort()
        await server.wait_closed()
        # Let the aborted transports deliver connection_lost before the loop goes away.
        await asyncio.sleep(0)
