"""Sync: mirror the project's code and data onto a host, incrementally, each file replaced atomically.

The modules, in the order a sync uses them:

- ``sources``: what to send where (:class:`SyncSource`, :func:`project_sources`);
- ``rules``: gitignore rules, what a source manages, what is never sent or deleted;
- ``scan``: the local walk, a source as a manifest; ``hashing``: sha256 and the hash cache;
- ``manifest``: the manifest values and the record sync keeps on the host;
- ``helper``: the program that runs on the host, and its protocol; ``helper_client``: its local end;
- ``plan``: the pure plan from two manifests (what ``--dry-run`` prints);
- ``apply``: carrying a plan out, through ``stream`` (small files via the helper) and ``sftp`` (large
  files), both reading local files as ``transfer`` checks them;
- ``report``: progress, results and the report; ``push``: :func:`sync`, all of it over one helper.

Callers outside the package use the names below.
"""

from provision.sync.hashing import HashCache
from provision.sync.helper_client import REMOTE_PYTHON, remote_manifest
from provision.sync.push import sync
from provision.sync.report import ProgressCallback, SourceChangedError, SyncProgress, SyncReport
from provision.sync.sources import SyncSource, project_sources

__all__ = [
    "REMOTE_PYTHON",
    "HashCache",
    "ProgressCallback",
    "SourceChangedError",
    "SyncProgress",
    "SyncReport",
    "SyncSource",
    "project_sources",
    "remote_manifest",
    "sync",
]
