"""``mcpctl doctor``: every phase of what Claude will run, checked and timed, and the report."""
