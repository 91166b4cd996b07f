"""Writing benchmark results into BENCHMARKS.md: a section between two markers, and the machine's name.

Standard library only, so the GPU benchmarks can use it on a machine without the CPU pipeline's
dependencies (PyAV & co.).
"""

from __future__ import annotations

import os
import platform
import re


def cpu_name() -> str:
    """``"<cores> cores, <CPU model>"`` of this machine."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            m = re.search(r"model name\s*:\s*(.+)", fh.read())
            if m:
                cpu = m.group(1).strip()
    except OSError:
        pass
    return f"{os.cpu_count()} cores, {cpu}"


def replace_section(path: str, begin: str, end: str, title: str, text: str) -> None:
    """Put ``text`` between the markers ``begin`` and ``end`` of the Markdown file ``path`` (a new
    ``## title`` section at the end when the markers are not there yet)."""
    body = f"{begin}\n{text}\n{end}"
    old = "# Benchmarks\n"
    if os.path.exists(path):
        with open(path, encoding="utf-8") as fh:
            old = fh.read()
    new = re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda _m: body, old, flags=re.S) if begin in old else (
        old.rstrip() + f"\n\n## {title}\n\n" + body + "\n")
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(new)
