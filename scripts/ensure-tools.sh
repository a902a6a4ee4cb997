#!/usr/bin/env bash
# Bring a fresh machine (python3 + pip) to the point where `make test` can run:
# uv, the locked environment, OpenSSH's sshd for the real-SSH tests, and npm for the MCPB CLI.
set -euo pipefail

if ! command -v uv >/dev/null 2>&1 && ! python3 -m uv --version >/dev/null 2>&1; then
    echo "installing uv with pip" >&2
    # Debian's system python refuses plain `pip install` (PEP 668); --user keeps it out of /usr.
    python3 -m pip install --quiet --user uv 2>/dev/null \
        || python3 -m pip install --quiet --user --break-system-packages uv \
        || python3 -m pip install --quiet --break-system-packages uv
fi

if [ ! -x /usr/sbin/sshd ]; then
    if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
        echo "installing openssh-server with apt-get (the SSH tests need a real sshd)" >&2
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-server >/dev/null
    else
        echo "warning: /usr/sbin/sshd is missing and we are not root: the real-sshd tests will be skipped" >&2
    fi
fi

if ! command -v npm >/dev/null 2>&1; then
    if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
        echo "installing nodejs and npm with apt-get (the official MCPB CLI validates our extensions)" >&2
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
    else
        echo "warning: npm is missing and we are not root: the extension validation test will be skipped" >&2
    fi
fi
