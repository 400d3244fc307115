"""The stored size of the uploaded images a document shows, for its ``<img>`` tags.

Read with a plain table, not the ``Upload`` model, so that data migrations rendering old
articles again (``bastion.content.stored_html``) can use it on their own connection.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session, scoped_session

from bastion.content.rendering import ImageSizes

_UPLOADS = sa.table(
    "uploads",
    sa.column("id", sa.String),
    sa.column("width", sa.Integer),
    sa.column("height", sa.Integer),
)
# Bound parameters per query: a long article may show a few thousand images, and SQLite
# builds before 3.32 accept at most 999 parameters in one statement.
BATCH = 500


def sizes_reader(bind: Session | scoped_session[Any] | Connection) -> ImageSizes:
    """A lookup for ``render_markdown``: upload id to its stored (width, height)."""

    def read(ids: Collection[str]) -> Mapping[str, tuple[int, int]]:
        wanted, sizes = list(ids), {}
        for start in range(0, len(wanted), BATCH):
            rows = bind.execute(
                sa.select(_UPLOADS.c.id, _UPLOADS.c.width, _UPLOADS.c.height).where(
                    _UPLOADS.c.id.in_(wanted[start : start + BATCH])
                )
            )
            sizes.update({upload_id: (width, height) for upload_id, width, height in rows})
        return sizes

    return read
