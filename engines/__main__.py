"""``python -m engines build|check|pick``: the same as ``stbn engines`` (engines/cli.py)."""

from engines.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
