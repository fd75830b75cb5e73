"""The book's one exception: what stops a build, with the notebook or file it concerns and the fix."""

from __future__ import annotations


class SiteError(RuntimeError):
    """The book cannot be built or checked (a notebook missing or failed, a Sphinx warning, a broken page)."""
