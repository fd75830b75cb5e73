"""``python -m tgad_lite.monitor replay|train``: see ``tgad_lite.monitor.cli``."""

from tgad_lite.monitor.cli import main

raise SystemExit(main())
