"""``python -m kansoku`` runs the command line."""

from kansoku.cli import main

raise SystemExit(main())
