"""Fold a dead gunicorn worker's Prometheus files into one archive file per metric type.

In multiprocess mode every worker writes ``counter_<pid>.db`` and ``histogram_<pid>.db``
(up to about a megabyte each) and ``/metrics`` sums every file in the directory.
``prometheus_client``'s ``mark_process_dead`` removes only live gauges, so each worker
recycled by ``max_requests`` left its files behind for the life of the container, until the
small in-memory volume they live on filled. Counters and histogram buckets are sums, so
adding a dead worker's values into ``counter_archive.db`` / ``histogram_archive.db`` keeps
every total exact while the directory stays at one file per live worker plus the archives.

Written here because ``prometheus_client`` offers no such merge. It runs in the gunicorn
master (``child_exit``), which handles one exiting worker at a time.
"""

from __future__ import annotations

import logging
from pathlib import Path

from prometheus_client.mmap_dict import MmapedDict

KINDS = ("counter", "histogram")
log = logging.getLogger("bastion.metrics")


def archive_dead_worker(directory: str | Path, pid: int) -> None:
    """Add ``pid``'s counter and histogram values to the archives, then delete its files.

    Never raises: it runs in the gunicorn master, which stops on an exception from a hook.
    A file that cannot be folded is left where it is (and still summed by /metrics).
    """
    for kind in KINDS:
        dead = Path(directory) / f"{kind}_{pid}.db"
        if not dead.exists():
            continue
        try:
            _fold(dead, Path(directory) / f"{kind}_archive.db")
        except Exception:  # a metrics file must never stop the master
            log.warning("could not archive %s", dead.name, exc_info=True)


def _fold(dead: Path, archive_path: Path) -> None:
    values = list(MmapedDict.read_all_values_from_file(str(dead)))  # type: ignore[no-untyped-call]
    archive = MmapedDict(str(archive_path))  # type: ignore[no-untyped-call]
    try:
        for key, value, timestamp, _pos in values:
            current, _ = archive.read_value(key)  # type: ignore[no-untyped-call]
            archive.write_value(key, current + value, timestamp)  # type: ignore[no-untyped-call]
    finally:
        archive.close()  # type: ignore[no-untyped-call]
    # A scrape between the write above and this unlink counts the dead worker twice for
    # that one scrape; it never loses a value.
    dead.unlink()
