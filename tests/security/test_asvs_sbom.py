"""The SBOM lists every locked package with its version, purl and hashes (V15.1.2)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
LOCKS = sorted((ROOT / "requirements").glob("*.txt"))


def _locked(path: Path) -> dict[str, tuple[str, set[str]]]:
    """name -> (version, hashes), read independently of the script: logical lines + packaging."""
    text = re.sub(r"\\\n", " ", path.read_text(encoding="utf-8"))
    out: dict[str, tuple[str, set[str]]] = {}
    for line in text.splitlines():
        line = line.split(" #", 1)[0].strip()
        if not line or line.startswith(("#", "-")):
            continue
        hashes = set(re.findall(r"--hash=sha256:([0-9a-f]{64})", line))
        req = Requirement(re.sub(r"\s--hash=\S+", "", line).strip())
        (version,) = [s.version for s in req.specifier]
        out[canonicalize_name(req.name)] = (version, hashes)
    return out


@pytest.fixture(scope="module")
def sbom(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    target = tmp_path_factory.mktemp("sbom") / "sbom.cdx.json"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "sbom.py"), "-o", str(target)],
                   check=True, cwd=ROOT)
    return json.loads(target.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


@pytest.mark.asvs("V15.1.2")
def test_sbom_is_cyclonedx_1_5(sbom: dict[str, object]) -> None:
    assert sbom["bomFormat"] == "CycloneDX" and sbom["specVersion"] == "1.5"
    assert str(sbom["serialNumber"]).startswith("urn:uuid:")
    assert sbom["metadata"]["component"]["name"] == "bastion"  # type: ignore[index]


@pytest.mark.asvs("V15.1.2")
def test_sbom_lists_every_locked_package_with_its_hashes(sbom: dict[str, object]) -> None:
    assert len(LOCKS) >= 2
    components = {c["name"].lower().replace("_", "-").replace(".", "-"): c
                  for c in sbom["components"]}  # type: ignore[attr-defined]
    for lock in LOCKS:
        locked = _locked(lock)
        assert len(locked) > (0 if lock.name == "build.txt" else 20), lock
        for name, (version, hashes) in locked.items():
            comp = components.get(name)
            assert comp is not None, f"{name} from {lock.name} is missing"
            assert comp["version"] == version
            assert comp["purl"] == f"pkg:pypi/{name}@{version}"
            listed = {h["content"] for h in comp["hashes"] if h["alg"] == "SHA-256"}
            assert hashes and hashes <= listed, name
    runtime = _locked(ROOT / "requirements" / "main.txt")
    for name, comp in components.items():
        assert comp["scope"] == ("required" if name in runtime else "optional"), name
