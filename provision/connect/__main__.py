"""``python -m provision.connect NAME``: the stdio proxy, as ``mcpctl connect NAME`` runs it."""

from provision.connect.main import main

raise SystemExit(main())
