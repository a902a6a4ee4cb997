"""Sync: the manifest, the plan (pure), applying it over SFTP or the host helper."""
