"""``python -m tgad_lite.site build|check``: see ``tgad_lite.site.cli``."""

from tgad_lite.site.cli import main

raise SystemExit(main())
