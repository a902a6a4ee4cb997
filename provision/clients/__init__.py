"""The MCP client configs mcpctl writes: where each app keeps its file, the entries, careful JSON edits.

``locations`` finds the file (per app, per platform), ``entries`` builds what goes in it (with
``programs`` finding the executable it launches), ``jsonedit`` changes one entry and nothing else
(with ``document``, ``backups`` and ``lock``), and ``configure`` ties them together for the CLI.
"""
