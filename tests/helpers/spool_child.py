"""Child process for the kill -9 test: record spans towards a dead collector, flush, then hang.

Usage: ``python spool_child.py SPOOL_DIR EXPORT_URL N SERVICE``. Prints one JSON line
``{"ids": [...], "flushed": bool, "stats": {...}}``, then ``FLUSHED``, then blocks until killed.
"""

from __future__ import annotations

import json
import sys
import threading

import kansoku


def main() -> None:
    spool_dir, url, count, service = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    kansoku.init(
        service_name=service,
        export=url,
        spool_dir=spool_dir,
        redact=False,
        instrument=[],
        batch_size=25,
        flush_interval_ms=20,
    )
    ids = []
    for i in range(count):
        with kansoku.span(f"child-{i}") as span:
            ids.append(span.span_id)
    flushed = kansoku.flush(timeout=30)
    sys.stdout.write(json.dumps({"ids": ids, "flushed": flushed, "stats": kansoku.stats()}) + "\n")
    sys.stdout.write("FLUSHED\n")
    sys.stdout.flush()
    threading.Event().wait()  # until SIGKILL: no atexit, no shutdown, no flush


if __name__ == "__main__":
    main()
