"""Sphinx configuration of the tgad-lite book (``make site``; see ``tgad_lite.site``).

The build copies this folder, the README, its figures and the executed notebooks (each headed by
how it ran) into a staging folder and runs Sphinx there with warnings as errors. Notebooks are
never executed here: their outputs are the runner's.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
from pathlib import Path

from sphinx.ext import autosummary

import tgad_lite

project = "tgad-lite"
author = "the tgad-lite authors"
copyright = "the tgad-lite authors"
release = version = tgad_lite.__version__

extensions = [
    "myst_nb",  # notebooks and Markdown pages (MyST)
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",  # the package's docstrings use Google-style "Args:" sections
    "sphinx.ext.mathjax",
]

# The landing page includes README.md: Sphinx must not read it as a page of its own.
exclude_patterns = ["_build", "README.md", "**.ipynb_checkpoints"]
templates_path = ["_templates"]
html_static_path = ["_static"]
html_css_files = ["book.css"]

# --- notebooks: published as the runner executed them
nb_execution_mode = "off"  # never re-execute: a failed or missing run stops the build instead
nb_merge_streams = True  # one block per cell instead of one per flushed print
nb_output_stderr = "show"
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "html_image"]
myst_heading_anchors = 3  # README's and notebooks' headings get anchors that links can use

# --- API reference: one page per public module, generated from the docstrings
autosummary_generate = True
autosummary_ignore_module_all = True  # document each object once, in the module that defines it
# undoc-members: every public function and class is listed, with or without a docstring
autodoc_default_options = {"members": True, "undoc-members": True, "show-inheritance": True, "ignore-module-all": True}
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_class_signature = "separated"
napoleon_use_ivar = True  # "Attributes:" as fields: autodoc documents the attributes themselves once
add_module_names = False

# --- math: MathJax 3 served from the site itself, because a reader may be offline and a CDN
# script would be the one thing on the page that fails. The files come from sphinx-mathjax-offline,
# copied by _copy_mathjax below rather than by that extension, which does not declare itself safe
# for parallel builds (-j). MyST tells MathJax to read only the math elements.
mathjax_path = "mathjax/tex-chtml.js"

# --- theme
html_theme = "sphinx_book_theme"
html_title = "tgad-lite"
html_favicon = "_static/favicon.svg"  # else browsers ask for /favicon.ico, a 404 in the console
# The theme logs a console error on a reader's first visit unless a colour mode is set here.
html_context = {"default_mode": "auto"}
html_theme_options = {
    "home_page_in_toc": True,
    "show_navbar_depth": 1,
    "use_download_button": True,
    "use_fullscreen_button": False,
    "show_toc_level": 2,
}
html_show_sourcelink = True
html_copy_source = True


_extract_summary = autosummary.extract_summary


def _summary_outside_literals(doc: list[str], document) -> str:
    """Autosummary's one-line summary, never cut inside an inline literal.

    Autosummary ends the summary at the first ". "; in ``0 .. N - 1`` that leaves an open literal
    (a docutils warning, so a failed build). Then the summary ends at the first ". " outside
    ``literals`` instead.
    """
    summary = _extract_summary(doc, document)
    if summary.count("``") % 2 == 0:
        return summary
    lines = [line.strip() for line in doc]
    while lines and not lines[0]:
        lines.pop(0)
    paragraph = " ".join(lines[: lines.index("")] if "" in lines else lines)
    inside = False
    for match in re.finditer(r"``|\.(?=\s|$)", paragraph):
        if match.group() == "``":
            inside = not inside
        elif not inside:
            return paragraph[: match.end()]
    return paragraph


autosummary.extract_summary = _summary_outside_literals


def _copy_mathjax(app, exception) -> None:
    """Copy MathJax into ``_static/mathjax`` of a successful HTML build."""
    if exception is not None or app.builder.format != "html":
        return
    spec = importlib.util.find_spec("sphinx-mathjax-offline")  # the distribution's odd module name
    if spec is None or spec.origin is None:
        raise RuntimeError("MathJax for the book is missing: install the docs dependencies (pip install -e '.[dev]')")
    source = Path(spec.origin).parent / "static" / "mathjax"
    shutil.copytree(source, Path(app.outdir) / "_static" / "mathjax", dirs_exist_ok=True)


def setup(app) -> dict:
    app.connect("build-finished", _copy_mathjax)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
