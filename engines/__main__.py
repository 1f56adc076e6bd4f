"""``python -m engines build|check|pick``: the same as ``stbn engines`` (engines/cli.py)."""

from engines.cli import main

raise SystemExit(main())
