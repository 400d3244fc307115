"""Static files under content-hashed URLs, cached by browsers for a year.

Flask serves ``/static`` with ``Cache-Control: no-cache``, so every page view asks again
for each stylesheet and script and waits for a 304. Here ``url_for('static', ...)`` adds
``?v=<hash of the file's bytes>``, and an answer to a URL whose ``v`` matches the file it
serves is marked ``public, max-age=31536000, immutable``: a browser uses its copy without
asking, and a changed file gets a new URL, so nobody keeps an old one. A missing or wrong
``v`` (an old page, a hand-typed URL) gets the file with Flask's revalidating default.

Why not Flask-Static-Digest: it writes renamed copies in a build step that ``make run``,
the tests and the image would all have to run first; a query string on the same file needs
neither. The hashes are taken once at start-up (the files ship with the code); with the
debugger on they are taken again when a file changes, so edits show on the next reload.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from flask import Flask, Response, request, send_from_directory

from bastion.http_preconditions import answer_conditions

IMMUTABLE = "public, max-age=31536000, immutable"
VERSION_ARG = "v"


class StaticDigests:
    """The short SHA-256 of every file under the static folder, by URL filename."""

    def __init__(self, folder: str | None, *, watch: bool) -> None:
        self._root = Path(folder) if folder else None
        self._watch = watch
        self._digests: dict[str, tuple[tuple[int, int], str]] = {}
        if self._root is not None and self._root.is_dir():
            for path in self._root.rglob("*"):
                if path.is_file():
                    self._store(path.relative_to(self._root).as_posix(), path)

    def _store(self, filename: str, path: Path) -> str | None:
        try:
            stat = path.stat()
            digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
        except OSError:
            self._digests.pop(filename, None)
            return None
        self._digests[filename] = ((stat.st_mtime_ns, stat.st_size), digest)
        return digest

    def get(self, filename: str) -> str | None:
        """The digest of ``filename``, or None for a name that is no static file.

        Only names found when walking the folder are known: a request's filename is looked
        up, never joined to a path, so ``..`` and friends find nothing.
        """
        known = self._digests.get(filename)
        if known is None or not self._watch or self._root is None:
            return known[1] if known else None
        path = self._root / filename
        try:
            stat = path.stat()
            if (stat.st_mtime_ns, stat.st_size) == known[0]:
                return known[1]
        except OSError:
            pass  # gone: _store forgets it
        return self._store(filename, path)


def init_static_assets(app: Flask) -> None:
    digests = StaticDigests(app.static_folder, watch=app.debug)
    app.extensions["bastion.static_digests"] = digests

    def add_version(endpoint: str, values: dict[str, Any]) -> None:
        if endpoint == "static" and VERSION_ARG not in values:
            digest = digests.get(str(values.get("filename", "")))
            if digest is not None:
                values[VERSION_ARG] = digest

    def cache_versioned(response: Response) -> Response:
        if request.endpoint != "static" or response.status_code not in (200, 206, 304):
            return response
        version = request.args.get(VERSION_ARG)
        filename = (request.view_args or {}).get("filename", "")
        if version and version == digests.get(str(filename)):
            response.headers["Cache-Control"] = IMMUTABLE
        return response

    def serve_static(filename: str) -> Response:
        """Flask's static view, with preconditions answered before ranges
        (``bastion/http_preconditions.py``): Flask's own lets Werkzeug answer them."""
        resp = send_from_directory(
            str(app.static_folder),
            filename,
            max_age=app.get_send_file_max_age(filename),
            conditional=False,
        )
        return answer_conditions(resp, request.environ)

    if "static" in app.view_functions:
        app.view_functions["static"] = serve_static
    app.url_defaults(add_version)
    app.after_request(cache_versioned)
