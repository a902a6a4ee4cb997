"""What a sync reports: the summary line, the skipped entries, and the error for files that kept changing."""

from __future__ import annotations

from pathlib import Path

from provision.sync.manifest import SKIP_FIFO, Skipped
from provision.sync.plan import SyncPlan, Upload
from provision.sync.report import SourceChangedError, SyncReport, SyncResult

ROOT = "/srv/app"


def upload(path: str, size: int) -> Upload:
    return Upload(path, size, "new", Path("/src") / path, 0, 0o644)


def test_a_report_sums_its_results_and_says_what_it_did() -> None:
    plans = (
        SyncPlan(
            ROOT, uploads=(upload("a", 1500),), unchanged=("b", "c"), skipped=(Skipped("p", SKIP_FIFO),)
        ),
        SyncPlan(f"{ROOT}/data", deletes=("old.csv",)),
    )
    results = (SyncResult(ROOT, files_sent=1, bytes_sent=1500), SyncResult(f"{ROOT}/data", deleted=1))
    report = SyncReport(plans, results, dry_run=False, seconds=0.25)
    assert report.changed and not report.up_to_date
    assert (report.files_sent, report.bytes_sent, report.deleted) == (1, 1500, 1)
    assert report.describe().splitlines() == [
        "sent 1 files (1.5 kB), deleted 1, 2 unchanged, 1 skipped, in 0.25 s",
        f"  ! p (skipped: {SKIP_FIFO})",
    ]
    dry = SyncReport(plans, (), dry_run=True, seconds=0.1)
    assert dry.describe() == "\n".join(p.describe() for p in plans) and not dry.changed


def test_an_up_to_date_report_says_how_many_files_it_checked() -> None:
    report = SyncReport((SyncPlan(ROOT, unchanged=("a", "b")),), (), dry_run=False, seconds=0.1)
    assert report.up_to_date and report.describe() == "up to date (2 files checked in 0.10 s)"


def test_files_that_kept_changing_are_named_with_what_to_do() -> None:
    one = SourceChangedError([Path("/d/sales.csv")])
    assert one.message == "/d/sales.csv changed while it was being sent; nothing was replaced for it"
    assert one.hint == "run `mcpctl sync` again when it is no longer being written"
    many = SourceChangedError([Path(f"/d/{i}.csv") for i in range(5)])
    assert many.message.startswith(
        "5 files changed while they were being sent (/d/0.csv, /d/1.csv, /d/2.csv, ...)"
    )
    assert many.paths[-1] == Path("/d/4.csv") and many.report is None
