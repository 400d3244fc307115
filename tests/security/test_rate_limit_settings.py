"""Rate-limit settings that cannot be read stop start-up: Flask-Limiter would log them and
apply no limit at all."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from flask import Flask

from bastion.config import RATE_LIMIT_SETTINGS, ConfigError


@pytest.mark.asvs("V2.4.1")
@pytest.mark.parametrize("value", ["10 per minute;", "ten a minute", "", "0 per minute", 10])
@pytest.mark.parametrize("key", RATE_LIMIT_SETTINGS)
def test_unreadable_rate_limits_stop_start_up(
    make_app: Callable[..., Flask], key: str, value: object
) -> None:
    with pytest.raises(ConfigError, match=f"BASTION_{key} must be a rate limit"):
        make_app(**{key: value})


def test_write_budgets_come_from_the_environment(
    make_app: Callable[..., Flask], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BASTION_ARTICLE_WRITE_RATE_LIMIT", "5 per minute; 50 per hour")
    monkeypatch.setenv("BASTION_COMMENT_WRITE_RATE_LIMIT", "7/minute")
    cfg = make_app(READ_ENV=True).config
    assert cfg["ARTICLE_WRITE_RATE_LIMIT"] == "5 per minute; 50 per hour"
    assert cfg["COMMENT_WRITE_RATE_LIMIT"] == "7/minute"
