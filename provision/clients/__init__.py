"""Client apps' config files: where they live, the entries we write, careful JSON edits."""
