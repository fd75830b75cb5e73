"""The header of each notebook page: how the notebook was executed, and its parameters table.

It goes right under the notebook's title: profile, device, seed, run time and when it ran, the
package versions from ``metrics.json``, then every parameter of the run (value, default, type,
allowed values, help; from the declarations of the parameters cell). A smoke run says that its
numbers are not results. Written in MyST Markdown (a ``note`` admonition with a
``<details>`` block), so Sphinx renders it like any cell of the page.
"""

from __future__ import annotations

import json
from typing import Any

from tgad_lite.notebooks.parameters import ParameterSpec
from tgad_lite.site.collect import PublishedNotebook
from tgad_lite.site.errors import SiteError

HEADER_CLASS = "tgad-run-info"  # styled by docs/book/_static/book.css; the browser check finds it
# Shown first, in this order; any other recorded package follows alphabetically, the platform last.
_LEADING_PACKAGES = ("python", "torch", "torch-geometric", "numpy")
_RUNNER_SET = ("output_dir",)  # the runner points it at the run folder: not a reader's knob


def _cell_text(text: str) -> str:
    """``text`` safe inside a Markdown table cell: one line, pipes and dollars escaped."""
    return " ".join(str(text).split()).replace("|", "\\|").replace("$", "\\$")


def _literal(value: Any) -> str:
    """A parameter value as the notebook would write it (``"sparse"``, ``None``, ``[1, 2]``), in code."""
    text = json.dumps(value) if isinstance(value, str) else repr(value)
    return f"`{_cell_text(text).replace('`', chr(39))}`"


def format_seconds(value: float | None) -> str:
    """A run time as the header shows it: ``12.3 s``, ``4.5 min``, or ``not recorded``."""
    if value is None:
        return "not recorded"
    return f"{value:.1f} s" if value < 120 else f"{value / 60:.1f} min"


def _versions(versions: dict[str, str]) -> str:
    names = [n for n in _LEADING_PACKAGES if n in versions]
    names += sorted(n for n in versions if n not in _LEADING_PACKAGES and n != "platform")
    text = ", ".join(f"{'Python' if n == 'python' else n} {versions[n]}" for n in names)
    if "platform" in versions:
        text += f" ({versions['platform']})"
    return _cell_text(text) or "not recorded"


def _changed(spec: ParameterSpec, value: Any) -> bool:
    return spec.default != value and spec.default_source != repr(value)


def parameters_table(nb: PublishedNotebook) -> str:
    """The run's parameters as a Markdown table: parameter, value in this run, allowed values, help.

    A value that differs from the declared default is in bold with the default beside it.
    ``output_dir`` (set by the runner to the run folder) is left out. Raises ``SiteError`` when
    the run recorded a parameter the notebook no longer declares (the run is older than the notebook).
    """
    values = nb.parameters
    unknown = sorted(set(values) - set(nb.specs))
    if unknown:
        raise SiteError(
            f"{nb.name}: the run recorded parameters its parameters cell does not declare ({', '.join(unknown)}); "
            "execute it again"
        )
    rows = ["| parameter | this run | allowed | help |", "|---|---|---|---|"]
    for name, spec in nb.specs.items():
        if name in _RUNNER_SET:
            continue
        if name not in values:
            shown = f"`{_cell_text(spec.default_source)}`"
        elif _changed(spec, values[name]):
            shown = f"**{_literal(values[name])}** (default `{_cell_text(spec.default_source)}`)"
        else:
            shown = _literal(values[name])
        allowed = "; ".join(part for part in (spec.type_name, spec.allowed()) if part)
        rows.append(f"| `{name}` | {shown} | {_cell_text(allowed)} | {_cell_text(spec.help) or '-'} |")
    return "\n".join(rows)


def page_header(nb: PublishedNotebook) -> str:
    """The MyST Markdown of the header cell for ``nb``'s page."""
    shown = [n for n in nb.specs if n not in _RUNNER_SET]
    changed = [n for n in shown if n in nb.parameters and _changed(nb.specs[n], nb.parameters[n])]
    summary = "all defaults" if not changed else f"changed: {', '.join(changed)}"
    finished = str(nb.status.get("finished") or "not recorded").replace("T", " ")
    lines = [
        f":::{{admonition}} How this page was executed\n:class: note {HEADER_CLASS}\n",
        "| profile | device | seed | run time | finished |",
        "|---|---|---|---|---|",
        f"| {_cell_text(nb.profile)} | {_cell_text(nb.device)} | {_cell_text(str(nb.seed))} "
        f"| {format_seconds(nb.runtime_s)} | {_cell_text(finished)} |",
        "",
        f"**Packages:** {_versions(nb.versions)}.",
        "",
    ]
    if nb.profile == "smoke":
        lines += [
            "**Smoke profile:** tiny settings so that every notebook runs in CI in seconds. The numbers "
            "on this page show what the code computes; they are not results (the README gives the "
            "full-profile ones).",
            "",
        ]
    lines += [
        "<details>",
        f"<summary>Parameters of this run ({len(shown)}, {summary})</summary>",
        "",
        parameters_table(nb),
        "",
        f"Run it yourself with other values: `python -m tgad_lite.notebooks run --only {nb.name} -p NAME=VALUE`.",
        "",
        "</details>",
        ":::",
    ]
    return "\n".join(lines)


def headed_notebook(nb: PublishedNotebook) -> Any:
    """The executed notebook with the header cell right under its title (an ``nbformat`` node).

    The title is the first line of the first Markdown cell, ``# Title``; that cell is split so
    the header follows the title and the rest of the cell follows the header. Raises
    ``SiteError`` when the notebook has no such title (the page would have no name).
    """
    import nbformat

    book = nbformat.read(nb.executed, as_version=4)
    first = next((i for i, c in enumerate(book.cells) if c.cell_type == "markdown"), None)
    source = book.cells[first].source.lstrip("\n") if first is not None else ""
    title, _, rest = source.partition("\n")
    if not title.startswith("# "):
        raise SiteError(
            f"{nb.name}: its first Markdown cell must start with the title line '# Title' (found {title[:60]!r})"
        )
    book.cells[first].source = title
    added = [nbformat.v4.new_markdown_cell(page_header(nb))]
    if rest.strip():
        added.append(nbformat.v4.new_markdown_cell(rest.strip("\n")))
    book.cells[first + 1 : first + 1] = added
    return book
