"""What an executed notebook shows its reader: the texts the notebook tests assert on."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat

# A progress line of tgad_lite.progress in lines mode ("desc: 10/200 (1.2 s)") or a tqdm bar ("45%|###").
PROGRESS_LINE = re.compile(r"\b\d+/\d+(?: done)? \(\d+(?:\.\d+)? s\)|\d+%\||\bit/s\b")
# The closing line each Progress display prints once in lines mode.
CLOSING_LINE = re.compile(r"\b\d+/\d+ done \(\d+(?:\.\d+)? s\)")


def streams(path: Path) -> tuple[str, str]:
    """(all stdout text, all stderr text) of an executed notebook's outputs."""
    nb = nbformat.read(path, as_version=4)
    out: dict[str, list[str]] = {"stdout": [], "stderr": []}
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            if o.get("output_type") == "stream":
                out[o["name"]].append(o["text"])
    return "".join(out["stdout"]), "".join(out["stderr"])


def shown_text(path: Path) -> str:
    """Every text the reader sees: streams, markdown/plain/html displays, errors."""
    nb = nbformat.read(path, as_version=4)
    parts = []
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            if o.get("output_type") == "stream":
                parts.append(o["text"])
            elif "data" in o:
                parts.extend(str(o["data"].get(k, "")) for k in ("text/markdown", "text/plain", "text/html"))
            elif o.get("output_type") == "error":
                parts.append(f"{o['ename']}: {o['evalue']}")
    return "\n".join(parts)


def progress_lines(text: str) -> list[str]:
    """The lines of ``text`` that are progress reports."""
    return [line for line in text.splitlines() if PROGRESS_LINE.search(line)]
