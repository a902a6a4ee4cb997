"""A host made ready: bootstrap (uv + the locked environment) and the one provision() entry point."""
