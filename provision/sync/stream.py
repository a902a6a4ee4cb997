"""Small files through the helper: one stream of framed files, no round trip per file.

Each file is read and checked whole (:func:`~provision.sync.transfer.read_settled`) before it is
framed, so one that keeps changing is never sent; the helper hashes what it receives and refuses bytes
that do not hash to what was sent. One barrier at the end says how many files the host installed.
"""

from __future__ import annotations

from collections.abc import Sequence

from provision.errors import RemoteError
from provision.sync.helper_client import HelperProcess
from provision.sync.plan import Upload
from provision.sync.transfer import Sent, Tracker, read_settled

STREAM_MAX_FILE = 256 * 1024  # files up to this size go in the stream, larger ones over SFTP
STREAM_CHUNK = 1024 * 1024  # bytes buffered before each write to the stream (and progress report)


async def send_stream(helper: HelperProcess, root: str, uploads: Sequence[Upload], tracker: Tracker) -> Sent:
    """Send small files to the helper in one stream: no round trip per file, one barrier at the end.

    Raises:
        RemoteError: The host refused a file, or installed fewer than were sent.
        ConnectError: The connection dropped.
        McpctlError: A local file cannot be read.
    """
    sent = Sent()
    buffer = bytearray()
    waiting = [0, 0]  # bytes and files in the buffer, reported once they are handed to SSH
    alive = True
    for upload in uploads:
        settled = read_settled(upload, tracker)
        if settled is None:
            sent.unsettled.append(upload)
            continue
        data, entry = settled
        request = {
            "op": "file",
            "root": root,
            "p": upload.path,
            "s": entry.size,
            "m": entry.mtime_s,
            "x": entry.mode,
            "h": entry.sha256,
        }
        buffer += helper.frame(request, data)
        sent.written[upload.path] = entry
        waiting = [waiting[0] + entry.size, waiting[1] + 1]
        if len(buffer) >= STREAM_CHUNK:
            alive = await helper.write(bytes(buffer))
            buffer.clear()
            if not alive:
                break  # the helper stopped: the barrier's reply says why
            tracker.add(*waiting)
            waiting = [0, 0]
    if alive and await helper.write(bytes(buffer) + helper.frame({"op": "barrier"})):
        tracker.add(*waiting)
    count = await helper.reply(root)
    if count != len(sent.written):
        raise RemoteError(
            f"the sync helper on {helper.remote.target.address} wrote {count} of {len(sent.written)} files",
            hint="sync again",
        )
    return sent
