from tests.support.account_fixtures import *  # noqa: F403
