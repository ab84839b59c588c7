"""Run ``kansoku server`` as a real subprocess (to ``kill -9`` it, SIGTERM it, restart it).

:class:`ServerProc` starts ``python -m kansoku server --port P --data-dir D`` with a clean
environment (no inherited ``KANSOKU_*``), waits for its ``kansoku server listening on URL`` line
and talks to it over loopback with :mod:`http.client`. The first start may use port 0; restarts
reuse the port it got, so clients keep one URL across crashes. Stderr goes to a log file that is
shown when something fails. Only the process this object started is ever signalled, by its PID.
"""

from __future__ import annotations

import http.client
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import orjson

LISTENING = "kansoku server listening on "
#: How the server is started: this interpreter, the installed package.
COMMAND = (sys.executable, "-m", "kansoku", "server")


class ServerProc:
    """One collector process at a time over ``data_dir``; :meth:`start` again after it ends."""

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int = 0,
        store: str | None = None,
        env: dict[str, str] | None = None,
        log_path: Path | None = None,
        make_data_dir: bool = True,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.port = port
        self.store = store
        self.env = dict(env or {})
        self.log_path = log_path or self.data_dir.parent / f"{self.data_dir.name}-server.log"
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""
        self.starts = 0
        self.make_data_dir = make_data_dir  # False: let the server create it (a first run)

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self, timeout: float = 30.0, env: dict[str, str] | None = None) -> ServerProc:
        """Start the server (``env`` adds to this object's variables for this start only)."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        cmd = [*COMMAND, "--port", str(self.port), "--data-dir", str(self.data_dir)]
        if self.store:
            cmd += ["--store", self.store]
        child_env = {k: v for k, v in os.environ.items() if not k.startswith("KANSOKU_")}
        child_env.update(self.env)
        child_env.update(env or {})
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        if self.make_data_dir:
            self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "a") as log:
            log.write(f"\n--- start {self.starts + 1}: {' '.join(cmd[2:])}\n")
            log.flush()
            self.proc = subprocess.Popen(  # noqa: S603 -- our own CLI with this interpreter
                cmd, stdout=subprocess.PIPE, stderr=log, text=True, env=child_env
            )
        self.starts += 1
        line = self._wait_for_listening(self.proc, timeout)
        self.url = line[len(LISTENING) :].split()[0]
        self.port = int(self.url.rsplit(":", 1)[1])
        return self

    def _wait_for_listening(self, proc: subprocess.Popen[str], timeout: float) -> str:
        assert proc.stdout is not None
        stdout = proc.stdout
        lines: queue.Queue[str | None] = queue.Queue()

        def pump() -> None:  # keeps draining stdout so the child never blocks on a full pipe
            with stdout:
                for text in stdout:
                    lines.put(text.rstrip("\n"))
            lines.put(None)

        threading.Thread(target=pump, name="server-stdout", daemon=True).start()
        deadline = time.monotonic() + timeout
        seen: list[str] = []
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = lines.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                break
            seen.append(line)
            if line.startswith(LISTENING):
                return line
        proc.kill()
        proc.wait(10)
        raise AssertionError(f"server did not start within {timeout} s; stdout {seen!r}\n{self.log()}")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill9(self) -> None:
        """SIGKILL the process this object started and reap it."""
        assert self.proc is not None
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait (bounded); the exit status. Kills it (and fails) if it does not exit."""
        assert self.proc is not None
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill9()
            raise AssertionError(f"server did not exit within {timeout} s of SIGTERM\n{self.log()}") from None

    def close(self) -> None:
        """Make sure nothing is left running (test teardown)."""
        if self.proc is not None and self.proc.poll() is None:
            self.kill9()

    def log(self, tail: int = 4000) -> str:
        try:
            return self.log_path.read_text()[-tail:]
        except FileNotFoundError:
            return ""

    # -- HTTP ----------------------------------------------------------------------------------------
    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            return r.status, r.read()
        finally:
            conn.close()

    def get_json(self, path: str) -> tuple[int, Any]:
        status, body = self.request("GET", path)
        return status, orjson.loads(body)

    def metrics(self) -> dict[str, float]:
        """``/metrics`` samples by name (with labels as written), e.g. ``m["kansoku_up"]``."""
        status, body = self.request("GET", "/metrics")
        assert status == 200, body[:500]
        out: dict[str, float] = {}
        for line in body.decode().splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                out[name] = float(value)
        return out

    def wait_caught_up(self, timeout: float = 30.0) -> dict[str, Any]:
        """Poll ``/readyz`` until it is 200 and the loader has loaded everything acknowledged."""
        deadline = time.monotonic() + timeout
        detail: Any = None
        while time.monotonic() < deadline:
            status, detail = self.get_json("/readyz")
            loader = detail.get("loader", {})
            if status == 200 and loader.get("caught_up") and not loader.get("pending_entries"):
                return dict(detail)
            time.sleep(0.05)
        raise AssertionError(f"loader did not catch up within {timeout} s: {detail}\n{self.log()}")
