"""``python -m tgad_lite.notebooks run|list``: see ``tgad_lite.notebooks.cli``."""

from tgad_lite.notebooks.cli import main

raise SystemExit(main())
