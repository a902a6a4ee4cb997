"""From a profile to the SSH target to log in to, following a sandbox that restarted on another port.

``mcpctl sandbox up`` goes back to its last port when it is free and takes another one when it is not;
its profiles follow it here, wherever one becomes an SSH target (connect, doctor, sync, provision,
client entries). Profiles stay plain data (:mod:`provision.profiles` knows nothing of SSH); this is the
one place a profile meets the SSH seam.
"""

from __future__ import annotations

import contextlib

from provision.errors import ProfileError
from provision.profiles import SANDBOX_HOSTS, Profile, known_hosts_path, load_profile, save_profile
from provision.ssh import sandbox
from provision.ssh.hostkeys import move_pin
from provision.ssh.target import Target


def target_for(profile: Profile) -> Target:
    """Return the SSH target of ``profile``, with its own known_hosts file.

    A sandbox profile gets the port the sandbox listens on now (see :func:`follow_sandbox`).

    Raises:
        ProfileError: The profile has no host yet (an ec2 profile whose instance is not launched), or a
            sandbox profile's known_hosts cannot be updated.
        SandboxError: The sandbox's directory cannot be created.
    """
    profile = follow_sandbox(profile)
    if profile.host is None:
        raise ProfileError(
            f"profile '{profile.name}' has no host address yet",
            hint=f"launch it with `mcpctl provision {profile.name}`",
        )
    return Target(
        host=profile.host,
        port=profile.port,
        user=profile.user,
        known_hosts=known_hosts_path(profile.name),
        identity_file=profile.identity_file,
        host_key_alias=profile.host_key_alias,
        use_agent=profile.use_agent,
        use_ssh_config=profile.use_ssh_config,
        connect_timeout=profile.connect_timeout,
        keepalive_interval=profile.keepalive_interval,
        name=profile.name,
        sandbox=profile.kind == "sandbox",
    )


def follow_sandbox(profile: Profile) -> Profile:
    """Return a sandbox profile at the port the sandbox listens on now; any other profile as it is.

    The profile's pin moves to the new ``[127.0.0.1]:PORT`` (the same key: no new trust; see
    :func:`provision.ssh.hostkeys.move_pin`) and its saved port is updated. A stopped sandbox leaves
    the profile as it is: ``mcpctl connect`` starts it, ``mcpctl doctor`` says so.

    Raises:
        ProfileError: The profile's known_hosts file cannot be read or written.
        SandboxError: The sandbox's directory cannot be created.
    """
    if profile.kind != "sandbox" or profile.host not in SANDBOX_HOSTS:
        return profile
    running = sandbox.status()
    if running is None:
        return profile
    if profile.host_key_alias is None:  # an alias pins the key whatever the port
        move_pin(known_hosts_path(profile.name), profile.host, running.port)
    if running.port == profile.port:
        return profile
    _save_moved_port(profile.name, profile.port, running.port)
    return profile.model_copy(update={"port": running.port})


def _save_moved_port(name: str, old: int, new: int) -> None:
    """Record a sandbox profile's new port in its file, if the file still says ``old``.

    Best effort: every use resolves the port anew, so a profile that cannot be read or written here
    (removed meanwhile, not saved yet, a read-only directory) still works; the saved port is what
    ``profile show`` and ssh-style client entries read.
    """
    with contextlib.suppress(ProfileError):
        saved = load_profile(name)
        if saved.kind == "sandbox" and saved.port == old:
            saved.port = new
            save_profile(saved)


__all__ = ["follow_sandbox", "target_for"]
