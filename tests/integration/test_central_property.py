"""Random sequences of deposits, issues, redeems and retries across three banks, on real
PostgreSQL: after every step the audit balances and the supply equals a plain model."""

from __future__ import annotations

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from central.app import create_app
from central.client import CentralClient
from central.config import CentralSettings
from rail_protocol.instruction_types import CENTRAL_ISSUE as ISSUE
from rail_protocol.instruction_types import CENTRAL_REDEEM as REDEEM
from rail_protocol.envelope import seal
from rail_protocol.keys import SigningKey
from tests.conftest import OPERATOR_TOKEN

pytestmark = pytest.mark.integration

BANKS = ("bank-a", "bank-b", "bank-c")
# Keys outlive examples (each example has a database of its own); OpenSSL signs fast.
KEYS = {bank: SigningKey.generate(engine="openssl") for bank in BANKS}

banks = st.sampled_from(BANKS)
amounts = st.integers(min_value=1, max_value=1_500)
steps = st.lists(
    st.one_of(
        st.tuples(st.just("deposit"), banks, amounts),
        st.tuples(st.just("issue"), banks, amounts),
        st.tuples(st.just("redeem"), banks, amounts),
        st.tuples(st.just("retry"), st.integers(min_value=0, max_value=10**6), st.just(0)),
    ),
    min_size=1,
    max_size=12,
)


class Model:
    """What central must say: per bank, reserves and holding, in plain integers."""

    def __init__(self) -> None:
        self.reserves = dict.fromkeys(BANKS, 0)
        self.holding = dict.fromkeys(BANKS, 0)

    def supply(self) -> dict:
        issued = sum(self.holding.values())
        return {
            "currency": "CNY",
            "total_issued_fen": issued,
            "backing_fen": issued,
            "in_flight_fen": 0,
            "banks": [{"bank_id": b, "reserves_fen": self.reserves[b],
                       "holding_fen": self.holding[b]} for b in BANKS],
        }


async def check(client: CentralClient, model: Model, entries: int) -> None:
    report = await client.audit()
    assert report["balanced"], report["problems"]
    assert report["entries"] == entries
    assert await client.supply() == model.supply()


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(initial=st.lists(st.integers(min_value=0, max_value=3_000), min_size=3, max_size=3),
       plan=steps)
async def test_random_issues_and_redeems_keep_central_balanced_and_equal_to_the_model(
    pg_databases, tmp_path_factory, initial, plan
):
    settings_ = CentralSettings(database_url=pg_databases(), operator_token=OPERATOR_TOKEN,
                                key_file=tmp_path_factory.mktemp("central") / "central.key",
                                db_pool_size=2)
    app = create_app(settings_)
    async with app.router.lifespan_context(app):
        async with CentralClient("http://central.test", operator_token=OPERATOR_TOKEN,
                                 transport=httpx.ASGITransport(app=app)) as client:
            model, entries, deposits = Model(), 0, 0
            sent: list[tuple[str, bytes, int, bytes]] = []  # path, body, status, answer

            for bank in BANKS:
                await client.register_bank(KEYS[bank], bank, bank.upper())
            await check(client, model, entries)

            async def deposit(bank: str, amount: int) -> None:
                nonlocal entries, deposits
                deposits += 1
                await client.deposit_reserves(bank, f"deposit-{deposits:06d}", amount)
                model.reserves[bank] += amount
                entries += 1

            for bank, amount in zip(BANKS, initial, strict=True):
                if amount:
                    await deposit(bank, amount)
            await check(client, model, entries)

            for op, arg, amount in plan:
                if op == "deposit":
                    await deposit(arg, amount)
                elif op in ("issue", "redeem"):
                    bank = arg
                    kind, path = (ISSUE, "/v1/issuance") if op == "issue" else (
                        REDEEM, "/v1/redemption")
                    source = model.reserves if op == "issue" else model.holding
                    target = model.holding if op == "issue" else model.reserves
                    body = orjson.dumps(seal(KEYS[bank], kind, {"bank_id": bank,
                                                                "amount_fen": amount}).to_dict())
                    response = await client.http.post(path, content=body)
                    if amount <= source[bank]:
                        assert response.status_code == 200, response.text
                        source[bank] -= amount
                        target[bank] += amount
                        entries += 1
                        receipt = response.json()["receipt"]
                        assert receipt["reserves_fen"] == model.reserves[bank]
                        assert receipt["holding_fen"] == model.holding[bank]
                    else:
                        assert response.status_code == 409
                        assert response.json()["error"]["code"] == (
                            "insufficient_reserves" if op == "issue"
                            else "insufficient_holdings")
                    sent.append((path, body, response.status_code, response.content))
                elif sent:  # retry an earlier instruction: same answer, no effect
                    path, body, status, answer = sent[arg % len(sent)]
                    response = await client.http.post(path, content=body)
                    assert response.status_code == status
                    if status == 200:
                        assert response.json() == {**orjson.loads(answer), "repeated": True}
                    else:
                        assert response.content == answer
                await check(client, model, entries)
