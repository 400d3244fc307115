"""The accounts migration builds the tables the code uses, on both databases."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import inspect

from bastion.extensions import db


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_migrations_create_account_tables(make_app: Any, backend: str) -> None:
    app = make_app(backend=backend, migrate=True)
    with app.app_context():
        tables = set(inspect(db.engine).get_table_names())
        assert {"recovery_codes", "login_throttles"} <= tables
        from flask_migrate import downgrade, upgrade

        downgrade(revision="0001")
        assert "recovery_codes" not in set(inspect(db.engine).get_table_names())
        upgrade()
    client = app.test_client()
    from tests.support.account_fixtures import sign_in

    assert sign_in(client, "nobody", "wrong password!").status_code == 200  # throttle row
