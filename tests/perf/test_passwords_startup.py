"""The timing-equaliser hash is ready at import without an Argon2 run, and still valid."""

from __future__ import annotations

import pytest

from bastion.security import passwords


@pytest.mark.asvs("V11.4.2")
def test_dummy_hash_uses_the_configured_parameters_and_a_real_verification() -> None:
    # Same parameters as real hashes, so an unknown user costs what a wrong password costs.
    assert not passwords._hasher.check_needs_rehash(passwords._DUMMY_HASH)
    assert passwords._hasher.verify(passwords._DUMMY_HASH, "bastion-dummy-password-for-timing")
    assert passwords.verify_password(None, "anything at all") is False
