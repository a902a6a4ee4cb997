"""provision: the mcpctl toolkit (SSH seam, profiles, sandbox host, sync, client config)."""

__version__ = "0.1.0"
