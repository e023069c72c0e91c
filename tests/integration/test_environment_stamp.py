"""A database serves one environment: the first process claims it, one of the other
environment is refused (access.environment_stamp), also when both claim at once."""

from __future__ import annotations

import asyncio

import pytest
from support.env import ModuleEnv

from fundhub.access.environment_stamp import (
    EnvironmentMismatch,
    claim_environment,
    stamped_environment,
)
from fundhub.access.keys import LIVE, SANDBOX


async def test_the_first_claim_holds_and_the_other_environment_is_refused(
    env: ModuleEnv, live_env: ModuleEnv
) -> None:
    assert await stamped_environment(env.pool) is None  # a fresh database: nobody claimed it
    # Concurrent claims of both environments: exactly one wins, the others are refused.
    claims = [
        claim_environment(pool, environment, "test")
        for pool, environment in [(env.pool, SANDBOX), (env.pool, LIVE)] * 4
    ]
    outcomes = await asyncio.gather(*claims, return_exceptions=True)
    stamped = await stamped_environment(env.pool)
    assert stamped in (SANDBOX, LIVE)
    for (_, environment), outcome in zip([(0, SANDBOX), (0, LIVE)] * 4, outcomes, strict=True):
        if environment == stamped:
            assert outcome is None
        else:
            assert isinstance(outcome, EnvironmentMismatch)
            assert outcome.error.code == "E080_ENVIRONMENT_MISMATCH"

    await claim_environment(live_env.pool, LIVE, "gateway")
    await claim_environment(live_env.pool, LIVE, "payment-worker")  # the same again: fine
    with pytest.raises(EnvironmentMismatch, match="holds live state"):
        await claim_environment(live_env.pool, SANDBOX, "gateway")
    assert await stamped_environment(live_env.pool) == LIVE
