"""The browsable book: the executed notebooks, the README and the API reference as a static site.

``python -m tgad_lite.site build`` (``make site``) publishes one run folder of the notebook runner
with Sphinx and MyST-NB, never re-executing a notebook; ``python -m tgad_lite.site check`` opens
every page in headless Chromium. Building needs the docs dependencies of the ``[dev]`` extra
(Sphinx, MyST-NB, the book theme), imported only when a build runs; the check needs Debian's
``chromium``. Importing this package imports neither.
"""

from tgad_lite.site.build import SiteBuild, build_site, stage_sources
from tgad_lite.site.check import Browser, PageCheck, SiteCheck, check_site, find_chromium, search_word, site_pages
from tgad_lite.site.collect import PublishedNotebook, collect_notebooks, newest_run_dir, resolve_run_dir
from tgad_lite.site.errors import SiteError
from tgad_lite.site.header import headed_notebook, page_header, parameters_table

__all__ = [
    "Browser",
    "PageCheck",
    "PublishedNotebook",
    "SiteBuild",
    "SiteCheck",
    "SiteError",
    "build_site",
    "check_site",
    "collect_notebooks",
    "find_chromium",
    "headed_notebook",
    "newest_run_dir",
    "page_header",
    "parameters_table",
    "resolve_run_dir",
    "search_word",
    "site_pages",
    "stage_sources",
]
