"""The one SSH seam: everything mcpctl does on a host, and the local sandbox host to try it on.

- :mod:`~provision.ssh.target`: the values: where to log in, what a command returned, host keys;
- :mod:`~provision.ssh.profile_target`: a profile's target (a sandbox profile follows its sandbox);
- :mod:`~provision.ssh.remote`: connecting, and the open connection (commands, processes, SFTP);
- :mod:`~provision.ssh.channels`, :mod:`~provision.ssh.sftp`, :mod:`~provision.ssh.marker`: what a
  connection is made of: its channel budget, its shared SFTP session, clean command output;
- :mod:`~provision.ssh.hostkeys`: fetching, checking and pinning host keys (never trust on first use);
- :mod:`~provision.ssh.failures`: asyncssh and OSError failures in mcpctl's words;
- :mod:`~provision.ssh.keys`: the key files mcpctl makes, and telling an encrypted identity file;
- :mod:`~provision.ssh.sandbox`, :mod:`~provision.ssh.sandbox_server`: the sandbox host on 127.0.0.1.
"""
