"""The entry point of ``mcpctl connect NAME`` (also ``python -m provision.connect NAME``).

It claims stdout for JSON-RPC, loads the profile, brings a stopped host up where mcpctl can, sets up
the profile's log, installs the signal handlers and runs the :class:`~provision.connect.proxy.Proxy`
until the client goes away. Everything diagnostic goes to the profile's log file (``log_dir()/NAME.log``,
rotated), the server's stderr included, with timings of connect, spawn and first message; it is also
copied to stderr, which MCP clients keep in their own log.

Nothing here imports the EC2 code (and boto3 with it) unless the profile is an EC2 one: a sandbox or
plain-host profile starts without paying for it. The relay itself (asyncssh, the event loop) is
imported once the profile is read, so a bad profile is reported without paying for it either.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import signal
import sys
from collections.abc import Callable, Coroutine, Iterator, Sequence
from logging.handlers import RotatingFileHandler
from pathlib import Path
from typing import TYPE_CHECKING, Any

from provision import shell
from provision.connect.log import log_path
from provision.connect.settings import EXIT_UNEXPECTED, ProxySettings
from provision.connect.stdio import claim_stdout
from provision.errors import McpctlError, ProfileError
from provision.layout import RemoteLayout
from provision.profiles import SANDBOX_HOSTS, Profile, list_profiles, load_profile

if TYPE_CHECKING:
    from provision.connect.proxy import Proxy

log = logging.getLogger(__name__)

LOGGER = "provision.connect"  # every module of the proxy logs under it, the server's stderr included
LOG_MAX_BYTES = 4 * 1024 * 1024
LOG_BACKUPS = 3
USAGE = "usage: python -m provision.connect NAME"


@contextlib.contextmanager
def proxy_logging(path: Path, *, stderr: bool = True) -> Iterator[None]:
    """Log the proxy (and the server's stderr) to ``path``, rotated, and to stderr, inside the block.

    Raises:
        ProfileError: The log file cannot be opened.
    """
    try:
        handlers: list[logging.Handler] = [
            RotatingFileHandler(path, maxBytes=LOG_MAX_BYTES, backupCount=LOG_BACKUPS, encoding="utf-8")
        ]
    except OSError as exc:
        raise ProfileError(
            f"cannot open the log file {path}: {exc.strerror or exc}", hint="check the directory"
        ) from exc
    if stderr:
        handlers.append(logging.StreamHandler(sys.stderr))
    formatter = logging.Formatter("%(asctime)s [%(process)d] %(levelname)s %(name)s: %(message)s")
    targets = ((logging.getLogger(LOGGER), logging.INFO), (logging.getLogger("asyncssh"), logging.WARNING))
    saved = [(logger, logger.level) for logger, _ in targets]
    for handler in handlers:
        handler.setFormatter(formatter)
    for logger, level in targets:
        logger.setLevel(level)
        for handler in handlers:
            logger.addHandler(handler)
    try:
        yield
    finally:
        for logger, level in saved:
            logger.setLevel(level)
            for handler in handlers:
                logger.removeHandler(handler)
        for handler in handlers:
            handler.close()


@contextlib.contextmanager
def _no_compiler_probe() -> Iterator[None]:
    """Inside the block, ``ctypes.util.find_library`` asks the loader's cache and ``ld``, not the compiler.

    Importing asyncssh looks for liboqs (post-quantum key exchange) by two names; on Linux, a library
    that is not in the loader's cache makes ``find_library`` run the C compiler for each, about 50 ms a
    name at every start of the proxy, before it can connect. A library the compiler finds but the
    loader's cache does not is not one ``dlopen`` loads by that name either, so nothing is lost: the
    lookup is the standard one without its compiler step.
    """
    import ctypes.util

    ldconfig = getattr(ctypes.util, "_findSoname_ldconfig", None)
    ld = getattr(ctypes.util, "_findLib_ld", None)
    soname = getattr(ctypes.util, "_get_soname", None)
    if not sys.platform.startswith("linux") or None in (ldconfig, ld, soname):
        yield  # other platforms look libraries up without a compiler (or this Python is different)
        return
    original = ctypes.util.find_library

    def find_library(name: str) -> str | None:
        found: str | None = ldconfig(name) or soname(ld(name))  # type: ignore[misc]
        return found

    ctypes.util.find_library = find_library
    try:
        yield
    finally:
        ctypes.util.find_library = original


def _import_relay() -> type[Proxy]:
    """Import the relay (asyncssh and all) and return the :class:`~provision.connect.proxy.Proxy`."""
    with _no_compiler_probe():
        from provision.connect.proxy import Proxy
    return Proxy


def loop_runner(name: str) -> Callable[[Coroutine[Any, Any, int]], int]:
    """What runs the proxy's coroutine: uvloop's ``run`` for ``"uvloop"`` where uvloop is installed
    (it is not on Windows), else ``asyncio.run``."""
    if name == "uvloop" and sys.platform != "win32":
        try:
            import uvloop
        except ImportError:
            log.info("uvloop is not installed; relaying on asyncio's own event loop")
        else:
            log.info("relaying on uvloop")
            return uvloop.run
    return asyncio.run


async def _run_with_signals(proxy: Proxy, stdin_fd: int, stdout_fd: int) -> int:
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT, getattr(signal, "SIGHUP", None)):
        if signum is not None:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(signum, proxy.stop, f"received {signal.Signals(signum).name}")
    return await proxy.run(stdin_fd, stdout_fd)


def _host_running(profile: Profile) -> Profile:
    """Bring the profile's host up if mcpctl can: start a stopped EC2 instance or the sandbox.

    Claude runs ``connect`` on demand, so a host stopped by autostop (or a sandbox stopped by
    ``sandbox down`` or a reboot) comes back here, within the client's 60 s budget where possible.

    Raises:
        CloudError, ConnectError, SandboxError: The host cannot be started.
    """
    if profile.kind == "ec2":
        # Imported here, not above: only an EC2 profile pays for boto3 (a second or so at every start).
        from provision.ec2.lifecycle import ensure_running

        return ensure_running(profile, on_phase=lambda phase, detail: log.info("ec2 %s: %s", phase, detail))
    from provision.ssh import sandbox

    if profile.kind == "sandbox" and profile.host in SANDBOX_HOSTS and sandbox.status() is None:
        # Its last port when free, else another: target_for(profile) follows it either way.
        info = sandbox.up()
        log.info("started the sandbox on %s:%d", info.host, info.port)
    return profile


def connect_main(name: str, *, command: Sequence[str] | None = None) -> int:
    """Run ``mcpctl connect NAME``: proxy this process's stdio to the profile's server until EOF.

    Args:
        name: The profile.
        command: Run this argv on the host instead of the profile's server (diagnostics, benchmarks).

    Returns:
        The exit code: 0 after a clean shutdown, else the code of the error that made it give up
        (2 profile, 3 connection, 4 host key, 5 server) or 70 for an unexpected failure.
    """
    try:
        wire = claim_stdout()
    except OSError as exc:
        print(
            f"mcpctl connect: error: stdout is not open ({exc.strerror}); run it from an MCP client.",
            file=sys.stderr,
        )
        return 1
    try:
        if command is None and name not in list_profiles():  # a deployment (`mcpctl deploy`) over HTTP
            from provision.connect.http_link import deployment_endpoint, run_http_proxy

            if (endpoint := deployment_endpoint(name)) is not None:
                with proxy_logging(log_path(name)):
                    settings = ProxySettings.from_env(os.environ)
                    return run_http_proxy(endpoint, settings, wire, _run_with_signals)
        profile = load_profile(name)
        settings = ProxySettings.from_env(os.environ)
        argv = (
            list(command)
            if command is not None
            else RemoteLayout.of(profile.remote_dir).server_argv(
                [str(path) for path in profile.data], profile.columns, profile.server_args
            )
        )
        with proxy_logging(log_path(profile.name)):
            # The SSH side imports asyncssh: the relay goes first, so that it is imported the quick way.
            proxy_class = _import_relay()
            from provision.ssh.profile_target import target_for

            profile = _host_running(profile)
            if profile.http is not None and command is None:  # an HTTP server: the same proxy, HTTP link
                from provision.connect.http_link import profile_endpoint, run_http_proxy

                return run_http_proxy(profile_endpoint(profile), settings, wire, _run_with_signals)
            target = target_for(profile)
            log.info(
                "mcpctl connect %s: %s@%s runs `%s`; gives up after %g s without a server",
                name,
                target.user,
                target.address,
                shell.join(argv),
                settings.give_up_after,
            )
            try:
                proxy = proxy_class(
                    name, target, argv, settings=settings, retarget=functools.partial(target_for, profile)
                )
                return loop_runner(settings.loop)(_run_with_signals(proxy, 0, wire))
            except Exception:
                log.exception("the proxy stopped on an unexpected error")
                return EXIT_UNEXPECTED
    except McpctlError as exc:
        print(f"mcpctl connect: error: {exc}", file=sys.stderr, flush=True)
        return exc.exit_code
    finally:
        os.close(wire)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m provision.connect NAME``: what ``mcpctl connect NAME`` runs, without the CLI."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1 or args[0].startswith("-"):
        print(USAGE, file=sys.stderr)
        return 2
    return connect_main(args[0])


__all__ = ["LOGGER", "connect_main", "loop_runner", "main", "proxy_logging"]
