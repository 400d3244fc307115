"""Property tests: rule checks and token readers never crash, whatever the input."""

from __future__ import annotations

import unicodedata

from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bastion.auth.services import password_problem, username_problem

FAST = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


@FAST
@given(password=st.text(max_size=300), username=st.text(max_size=40), email=st.text(max_size=60))
def test_password_rules_answer_with_a_message_or_none(password: str, username: str,
                                                       email: str) -> None:
    problem = password_problem(password, username=username, email=email)
    assert problem is None or isinstance(problem, str)
    if problem is None:  # anything accepted is within the length rules after NFKC
        normalised = unicodedata.normalize("NFKC", password)
        assert 12 <= len(normalised) <= 128
        assert "\x00" not in normalised


@FAST
@given(name=st.text(max_size=80))
def test_username_rules_never_crash(name: str) -> None:
    assert username_problem(name) is None or "letters" in str(username_problem(name))


@FAST
@given(token=st.text(max_size=700))
def test_token_readers_refuse_garbage(app: Flask, token: str) -> None:
    from bastion.auth import links

    with app.test_request_context():
        for purpose in ("confirm", "reset", "email_change"):
            assert links.read_token(purpose, token, 3600) is None
