"""Warm start: a per-user, per-project server that has imported everything and forks per session.

``attach`` is the launch command (stdlib only, run with ``python -I -S``); ``daemon`` is
``mcp-sales warm``; ``session`` turns a forked child into the stdio server of one session.
"""
