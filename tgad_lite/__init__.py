"""tgad-lite: the helper package behind the notebooks.

Importing it has no side effects: nothing is downloaded, written, seeded or configured here.
Import the submodules you need (``tgad_lite.data``, ``tgad_lite.gat``, ``tgad_lite.train``,
``tgad_lite.viz``, ``tgad_lite.repro``).
"""

__version__ = "0.1.0"
