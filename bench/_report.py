"""What every benchmark script shares: machine notes, the commit, and its own RESULTS.md section."""

from __future__ import annotations

import platform
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_HEADER = "# Benchmark results\n\nEach section is written by the benchmark it names; rerun it to refresh.\n"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def git_commit() -> str:
    """The checked-out commit, read from ``.git`` without running git."""
    try:
        head = (ROOT / ".git" / "HEAD").read_text().strip()
        if not head.startswith("ref: "):
            return head[:10]
        ref = head[5:]
        if (ROOT / ".git" / ref).exists():
            return (ROOT / ".git" / ref).read_text().strip()[:10]
        for line in (ROOT / ".git" / "packed-refs").read_text().splitlines():
            if line.endswith(" " + ref):
                return line[:10]
    except OSError:
        pass
    return "unknown"


def write_section(path: Path, section: str, title: str) -> None:
    """Replace the section headed ``title`` in ``path`` (or append it), keeping every other one."""
    text = path.read_text() if path.exists() else _HEADER
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.strip() == title), None)
    if start is None:
        before, after = text.rstrip("\n") + "\n\n", ""
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        before, after = "".join(lines[:start]), "".join(lines[end:])
    new = before + section.rstrip("\n") + "\n" + ("\n" + after if after else "")
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text(new)
    tmp.replace(path)
