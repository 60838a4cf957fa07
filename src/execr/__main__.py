"""``python -m execr``: the ``execr`` command line."""

from .cli import main

raise SystemExit(main())
