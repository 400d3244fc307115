"""The README's API example for ``make run``, run as written: a newcomer copies it first."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from bastion.models import User
from tests.api.conftest import Api, bearer, otp_for
from tests.factories import PASSWORD

README = Path(__file__).resolve().parents[2] / "README.md"
SH_BLOCK = re.compile(r"^```sh\n(.*?)^```", re.S | re.M)
LOCAL_SITE = "http://127.0.0.1:5000"
EXTRACT = re.compile(r"^(\w+)=\$\(printf %s \"\$TOKENS\" \| python3 -c '([^']+)'\)$", re.M)
TOKEN_BODY = re.compile(r"/api/v1/auth/token .*?\\\n\s+-d '([^']+)'", re.S)
CALL = re.compile(
    r"^curl -s http://127\.0\.0\.1:5000(/api/v1/\S+) -H \"Authorization: Bearer \$ACCESS\"", re.M
)


def _local_example() -> str:
    section = README.read_text(encoding="utf-8").split("\n## API\n", 1)[1].split("\n## ", 1)[0]
    blocks = [block for block in SH_BLOCK.findall(section) if LOCAL_SITE in block]
    assert len(blocks) == 1, "the API section shows how to call the site `make run` serves"
    return blocks[0]


def test_the_local_api_example_keeps_the_tokens_and_its_calls_answer(
    api: Api, make_user: Callable[..., User]
) -> None:
    """The README's calls used ``$ACCESS`` and ``$REFRESH`` with no word of how they get
    set, against a host a developer does not run."""
    example = _local_example()
    user = make_user()
    answer = api.call("POST", "/auth/token", json={"username": user.username, "password": PASSWORD})
    assert answer.status_code == 200

    kept = {}
    for name, code in EXTRACT.findall(example):
        proc = subprocess.run(
            [sys.executable, "-c", code],
            input=answer.get_data(as_text=True),
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        kept[name] = proc.stdout.strip()
    assert kept == {
        "ACCESS": answer.get_json()["access_token"],
        "REFRESH": answer.get_json()["refresh_token"],
    }

    paths = CALL.findall(example)
    assert paths == ["/api/v1/me", "/api/v1/articles"]
    for path in paths:
        resp = api.client.get(path, headers=bearer(kept["ACCESS"]))
        assert resp.status_code == 200, (path, resp.get_json())


def test_the_local_sign_in_works_for_the_admin_the_setup_link_made(
    api: Api, make_user: Callable[..., User]
) -> None:
    """The first account is an admin, who has 2FA: the example's body, without ``otp``,
    got a 401 and the next line's ``["access_token"]`` a KeyError traceback."""
    admin = make_user("admin")
    body = json.loads(TOKEN_BODY.findall(_local_example())[0])
    assert set(body) == {"username", "password", "otp"}
    body.update(username=admin.username, password=PASSWORD, otp=otp_for(admin))

    answer = api.call("POST", "/auth/token", json=body)

    assert answer.status_code == 200, answer.get_json()
