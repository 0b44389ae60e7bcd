"""``python -m cup4soil`` runs the command line."""

from .cli import main

raise SystemExit(main())
