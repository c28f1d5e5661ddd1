"""A bank's position with central, kept as it is posted (migration 0011): every posting to
`central` or `redeem_out`, whichever path writes it, is appended to `position_deltas`; the
background fold keeps that to a row per account without changing a sum; the audit finds a
position that no longer equals the journal. On both databases."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from bank.adapters import books_sql
from rail_protocol.money import yuan
from tests.support.rail import rail_factory  # noqa: F401

pytestmark = pytest.mark.integration


async def kept_position(node) -> tuple[dict[str, int], int]:
    async with node.engine.connect() as conn:
        return await books_sql.position(conn), await books_sql.position_rows(conn)


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
async def test_the_position_follows_every_posting_folds_and_is_audited(rail_factory,  # noqa: F811
                                                                       backend):
    async with rail_factory(backend=backend) as rail:
        at_yangtze = await rail.funded_wallet("yangtze", yuan(100))   # the vault draws
        at_pearl = await rail.funded_wallet("pearl", yuan(100))
        await rail.pay(at_yangtze, await rail.open_wallet("pearl"), 1_234)   # settle, credit
        await rail.pay(at_pearl, await rail.open_wallet("yangtze"), 567)
        report = await rail.assert_balanced()       # each bank's audit: position == journal
        node = rail.banks["yangtze"].node
        position, rows = await kept_position(node)
        assert -position["central"] == report["holding"]["yangtze"] > 0
        assert rows >= 3                            # the draw, the settle, the credit

        assert await node.fold_positions(at_least=1) == rows
        assert await kept_position(node) == (position, 1)
        assert await node.fold_positions(at_least=2) == 0    # nothing piled up since

        async with node.engine.begin() as conn:    # the kept position no longer the journal's
            await conn.execute(sa.text(
                "INSERT INTO position_deltas (account, amount_fen) VALUES ('central', 1)"))
        audit = await rail.bank_audit("yangtze")
        assert not audit["balanced"]
        assert (f"position central {position['central'] + 1} != journal {position['central']}"
                in audit["problems"]), audit["problems"]
