"""``python -m bfxsync``: the same as the ``bfxsync`` console script."""
from bfxsync.cli import main

raise SystemExit(main())
