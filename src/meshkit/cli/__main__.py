"""``python -m meshkit.cli``: the same as ``meshkit``."""

from meshkit.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
