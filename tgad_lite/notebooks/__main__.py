"""``python -m tgad_lite.notebooks run|list``: see ``tgad_lite.notebooks.runner``."""

from tgad_lite.notebooks.runner import main

raise SystemExit(main())
