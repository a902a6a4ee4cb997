"""The one SSH seam: targets, error translation, host keys, the Remote, key files, the sandbox host."""
