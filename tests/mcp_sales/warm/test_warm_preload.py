"""What the warm server does before forking, so that a session does not have to."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.mcp_sales.warm.helpers import REPO

PROBE = """
import json, sys
from mcp_sales.warm.process import thread_count, warm_session_start
before = "anyio._backends._asyncio" in sys.modules
warm_session_start()
print(json.dumps({
    "backend_before": before,
    "backend_after": "anyio._backends._asyncio" in sys.modules,
    "http_options": "mcp_sales.http.options" in sys.modules,
    "threads": thread_count(),
}))
"""


def test_the_session_start_is_warmed_without_starting_a_thread() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=REPO, capture_output=True, text=True, timeout=120, check=True
    )
    report = json.loads(done.stdout.strip().splitlines()[-1])
    # The event loop's backend is what each session used to import between fork and `initialize`.
    assert report == {"backend_before": False, "backend_after": True, "http_options": True, "threads": 1}
