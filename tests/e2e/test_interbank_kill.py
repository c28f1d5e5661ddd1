"""Kill tests for interbank payments (docs/interbank.md, "Crash at any step").

Central, bank A ("yangtze") and bank B ("pearl") run as REAL uvicorn processes, each on a
fresh PostgreSQL database, the banks on the real Redis. One party is started with a crash
point armed (`YUANRAIL_CRASH_AT`): it SIGKILLs itself there, in the middle of a cross-bank
payment. The test proves the process died, restarts it on the same database, key and port
without the crash point, and checks that the payment ends fully done (or, for a payee that
does not exist, fully undone), that the payer was debited exactly once, that the payment
appears once in each history, and that the conservation audit across central and both banks
balances to the fen. A pair of tests kills bank B from outside and checks that nothing is
decided while it is down: the transfer stays `prepared`, the payment `processing`. The last
test makes a wallet's retry of a refused payment meet the refund at bank A's database, which
once deadlocked (the refund now takes its locks in the same order as the retry).

Each test prints a timeline (`-rP` or `-s` shows it); a failing test's report carries the
tail of every process's log."""

from __future__ import annotations

import asyncio
import re
import signal
import time
from pathlib import Path

import httpx
import psycopg
import pytest

from bank.client import BankClient
from central.client import CentralClient
from rail_protocol.errors import RailError
from rail_protocol.keys import SigningKey
from rail_protocol.money import yuan
from tests.support.processes_rail import (  # noqa: F401 - process_rail is a fixture
    BANK_NAMES, BANK_TOKENS, CENTRAL, CENTRAL_TOKEN, ProcessRail, process_rail)
from tests.support.rail import new_id_number, new_phone, psycopg_url
from tests.support.polling import lock_waiters, poll
from yuanrail.audit import audit_rail

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
A, B = "yangtze", "pearl"
RESERVES_FEN = yuan(1_000_000)
DEPOSIT_FEN = yuan(5_000)        # the payer's deposit account at A, before the top-up
TOPUP_FEN = yuan(1_000)          # moved from that account into the payer's wallet
AMOUNT_FEN = yuan(200)           # the cross-bank payment
MISSING_PAYEE = "pearl.0000000000000000"   # routed to pearl, which has no such wallet

# Every crash point on the interbank path, with the party whose process it kills.
CRASH_POINTS = [
    (A, "bank.interbank.after_debit"),
    (A, "bank.interbank.before_outcome"),
    (CENTRAL, "central.transfer.after_prepare"),
    (CENTRAL, "central.transfer.after_answer"),
    (CENTRAL, "central.transfer.after_settle"),
    (B, "bank.interbank_in.after_credit"),
]
# Those a refused credit passes: A's and central's, and B's own point after the refusal.
REFUSAL_CRASH_POINTS = [(party, point) for party, point in CRASH_POINTS if party != B] + [
    (B, "bank.interbank_in.after_refusal")]

DIE_TIMEOUT_S = 15
SETTLE_TIMEOUT_S = 30


def _ids(points):
    return [point for _party, point in points]


# --- helpers --------------------------------------------------------------------------


def _no_keepalive() -> httpx.AsyncHTTPTransport:
    # Processes get killed under the test's feet: never reuse a connection to one.
    return httpx.AsyncHTTPTransport(limits=httpx.Limits(max_keepalive_connections=0))


class Parties:
    """The test's view of the rail: operator clients, the payer at A, the payee at B."""

    def __init__(self, rail: ProcessRail) -> None:
        self.rail = rail
        self.central = CentralClient(rail.central_url, operator_token=CENTRAL_TOKEN,
                                     transport=_no_keepalive())
        self.banks = {b: BankClient(url, operator_token=BANK_TOKENS[b], timeout_s=15,
                                    transport=_no_keepalive())
                      for b, url in rail.bank_urls.items()}
        self.payer_key = SigningKey.generate()
        self.payer = ""
        self.payer_account = ""
        self.payee_key = SigningKey.generate()
        self.payee = ""
        self.envelope = None
        self.t0 = time.monotonic()
        self.timeline: list[str] = []

    def mark(self, what: str) -> None:
        """Note a step with the time since the start (printed at the end: `-rP` or `-s`)."""
        line = f"{time.monotonic() - self.t0:6.2f}s {what}"
        self.timeline.append(line)
        print(line, flush=True)

    async def aclose(self) -> None:
        await self.central.aclose()
        for client in self.banks.values():
            await client.aclose()

    async def seed(self) -> None:
        """Reserves for both banks; a class-2 payer at A with its own deposit account,
        topped up; a phone-only payee at B."""
        for bank_id in BANK_NAMES:
            await self.central.deposit_reserves(bank_id, f"kill-reserves-{bank_id}",
                                                RESERVES_FEN)
        bank_a = self.banks[A]
        phone = new_phone()
        self.payer = (await bank_a.open_wallet(self.payer_key, phone))["wallet_id"]
        account = await bank_a.open_deposit_account(phone, "Kill Test Payer", DEPOSIT_FEN)
        self.payer_account = account["account_id"]
        view = await bank_a.upgrade(self.payer_key, self.payer, id_number=new_id_number(),
                                    deposit_account=self.payer_account)
        assert view["kyc_class"] == 2, view
        await bank_a.top_up(self.payer_key, self.payer, TOPUP_FEN)
        assert (await self.payer_view())["balance_fen"] == TOPUP_FEN
        self.payee = (await self.banks[B].open_wallet(self.payee_key, new_phone()))["wallet_id"]

    async def pay(self, payee: str) -> dict | RailError:
        """The one cross-bank payment; a transport error (A died under it) is an answer."""
        self.envelope = self.banks[A].pay_envelope(self.payer_key, self.payer, payee,
                                                   AMOUNT_FEN, memo="kill test")
        try:
            return await self.banks[A].send("/v1/payments", self.envelope)
        except RailError as exc:
            if exc.code != "upstream_unavailable":
                raise
            return exc

    async def resend(self) -> dict | RailError:
        """What a wallet does after a lost answer: send the very same signed payment again.
        It must be answered with the first payment (`repeated`), never paid again; a
        payment refused by B is answered with B's refusal."""
        try:
            return await self.banks[A].send("/v1/payments", self.envelope)
        except RailError as exc:
            return exc

    async def payer_view(self) -> dict:
        return await self.banks[A].wallet(self.payer_key, self.payer)

    async def payer_history(self) -> list[dict]:
        return (await self.banks[A].history(self.payer_key, self.payer, limit=100))["items"]

    async def payee_history(self) -> list[dict]:
        return (await self.banks[B].history(self.payee_key, self.payee, limit=100))["items"]

    async def outbound(self) -> list[dict]:
        return [i for i in await self.payer_history() if i["kind"] == "interbank_out"]

    async def wait_final(self, want: str, timeout_s: float = SETTLE_TIMEOUT_S) -> dict:
        """Poll the payer's history (signed read), bounded, until its one interbank payment
        is `want`; the last view seen, for the assertion to show."""
        deadline = time.monotonic() + timeout_s
        last: object = None
        for _ in range(int(timeout_s / 0.1) + 1):
            try:
                items = await self.outbound()
                last = items
                if len(items) == 1 and items[0]["status"] == want:
                    return items[0]
            except RailError as exc:  # a party may still be coming up
                last = exc
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
        raise AssertionError(f"payment not {want} within {timeout_s} s; last seen {last!r}\n"
                             f"{self.rail.logs()}")

    async def audit(self) -> list[str]:
        balanced, lines = await audit_rail(self.rail.central_url, CENTRAL_TOKEN,
                                           self.rail.audit_banks())
        assert balanced, "\n".join(lines)
        return lines


async def _assert_final(p: Parties, payee: str, want: str) -> None:
    """Fully done (`settled`) or fully undone (`rejected`), once, everywhere; audit balanced."""
    payment = await p.wait_final(want)
    p.mark(f"payment {want}")
    again = await p.resend()
    if want == "settled":
        assert isinstance(again, dict), again
        assert (again.get("repeated"), again["payment_id"], again["status"]) == (
            True, payment["payment_id"], "settled"), again
    else:
        assert isinstance(again, RailError) and again.code == "unknown_wallet", again
    assert payment["amount_fen"] == AMOUNT_FEN
    assert payment["payer_wallet"] == p.payer and payment["payee_wallet"] == payee

    # The payer: debited exactly once, or refunded in full; the top-up pulled once.
    history = await p.payer_history()
    assert [i["kind"] for i in history].count("interbank_out") == 1, history
    assert sum(1 for i in history if i["payment_id"] == payment["payment_id"]) == 1
    view = await p.payer_view()
    expected = TOPUP_FEN - AMOUNT_FEN if want == "settled" else TOPUP_FEN
    assert view["balance_fen"] == expected, (want, view)
    assert view["spent_today_fen"] == (AMOUNT_FEN if want == "settled" else 0), view
    account = await p.banks[A].deposit_account(p.payer_account)
    assert account["balance_fen"] == DEPOSIT_FEN - TOPUP_FEN, account

    # Central: one transfer, final, the same way.
    transfers = (await p.central.transfers(limit=100))["transfers"]
    assert len(transfers) == 1, transfers
    transfer = transfers[0]
    assert (transfer["status"], transfer["amount_fen"], transfer["from_bank"],
            transfer["to_bank"]) == (want, AMOUNT_FEN, A, B), transfer
    transfer_id = transfer["transfer_id"]
    assert transfer_id.startswith(f"{A}.")
    credited = (await p.banks[B].credited([transfer_id]))["credited"]

    if want == "settled":
        # The payee: credited exactly once, the payment once in its history.
        incoming = [i for i in await p.payee_history() if i["kind"] == "interbank_in"]
        assert len(incoming) == 1, incoming
        assert (incoming[0]["status"], incoming[0]["amount_fen"],
                incoming[0]["instruction_id"]) == ("settled", AMOUNT_FEN, transfer_id)
        assert (await p.banks[B].wallet(p.payee_key, p.payee))["balance_fen"] == AMOUNT_FEN
        assert credited == [transfer_id]
    else:
        assert payment.get("code") == "unknown_wallet", payment
        assert transfer.get("code") == "unknown_wallet", transfer
        assert credited == []

    # Nothing left in flight anywhere, and the whole rail balances to the fen.
    central_audit = await p.central.audit()
    assert central_audit["in_flight_fen"] == 0, central_audit
    for bank_id in BANK_NAMES:
        own = await p.banks[bank_id].audit()
        assert own["processing_out"] == [] and own["pending_vault_ops"] == 0, (bank_id, own)
    await p.audit()
    p.mark("audit balanced")


async def _crash_and_recover(process_rail, party: str, point: str, *, refused: bool) -> None:
    started = time.monotonic()
    rail: ProcessRail = process_rail(crash={party: point})
    p = Parties(rail)
    p.t0 = started
    p.mark(f"rail up, {party} armed at {point}")
    try:
        await p.seed()
        p.mark("seeded")
        assert rail.alive(party), f"{party} died before the payment\n{rail.log_tail(party)}"
        payee = MISSING_PAYEE if refused else p.payee

        answer = await p.pay(payee)
        p.mark(f"paid: {answer!r}")
        # The crash is on the synchronous path of the payment: whoever answers the wallet
        # (if anyone) cannot know the final status yet. Except past central's finish: central
        # answers bank A once B has accepted, before that finish commits (docs/interbank.md,
        # "Answering before the finish"), so A may have heard `settled` before central died.
        if isinstance(answer, dict):
            heard = ("processing", "settled") if (
                point == "central.transfer.after_settle" and not refused) else ("processing",)
            assert answer["status"] in heard, answer
            assert answer["balance_after_fen"] == TOPUP_FEN - AMOUNT_FEN, answer

        code = await rail.wait_dead(party, DIE_TIMEOUT_S)
        p.mark(f"{party} exited with {code}")
        assert code == -signal.SIGKILL, (
            f"{party} did not die at {point} (return code {code})\n{rail.log_tail(party)}")
        for other in set(BANK_NAMES) | {CENTRAL}:
            if other != party:
                assert rail.alive(other), f"{other} died too\n{rail.log_tail(other)}"

        # While the armed party is down, what the others hold must already be consistent.
        if party == B:
            transfer = (await p.central.transfers(limit=10))["transfers"]
            assert [t["status"] for t in transfer] == ["prepared"], transfer
            assert [i["status"] for i in await p.outbound()] == ["processing"]
        if party == A and point.endswith("before_outcome"):
            # central answered A before (settled) or after (rejected) its finish commits
            final = "rejected" if refused else "settled"
            for _ in range(100):
                transfer = (await p.central.transfers(limit=10))["transfers"]
                if [t["status"] for t in transfer] == [final]:
                    break
                await asyncio.sleep(0.05)
            assert [t["status"] for t in transfer] == [final]

        rail.restart(party)
        p.mark(f"{party} restarted")
        if party == B:
            # B is back with the credit on its books while central may still hold the
            # amount in flight (its retries back off): the audit must balance either way.
            status = (await p.central.transfers(limit=10))["transfers"][0]["status"]
            await p.audit()
            p.mark(f"audit balanced with the transfer {status} at central")
        if not refused:
            # The wallet retries at once (racing the recovery): the first payment, never a
            # new one. (For a refused payment this race can deadlock at A: see
            # test_wallet_retry_racing_a_refusal_does_not_deadlock; there the retry is made
            # only once the payment is final, in _assert_final.)
            again = await p.resend()
            p.mark(f"resent: {again!r}")
            assert isinstance(again, dict) and again.get("repeated") is True, again
            assert again["status"] in ("processing", "settled"), again
        await _assert_final(p, payee, "rejected" if refused else "settled")
        assert rail.alive(party) and rail.returncode(party) is None
    finally:
        await p.aclose()


# --- the crash points exist -------------------------------------------------------------


def test_every_crash_point_in_the_code_is_covered():
    """A crash point added (or renamed) on the interbank path must get its kill test."""
    found = set()
    for package in ("bank", "central", "rail_service", "rail_protocol"):
        for path in (REPO / package).rglob("*.py"):
            found |= set(re.findall(r"crash_point\(\s*[\"']([^\"']+)[\"']\s*\)",
                                    path.read_text()))
    covered = {point for _party, point in CRASH_POINTS + REFUSAL_CRASH_POINTS}
    assert found == covered, (f"crash points without a kill test: {sorted(found - covered)}; "
                              f"kill tests for crash points gone: {sorted(covered - found)}")


# --- kills at each step -------------------------------------------------------------------


@pytest.mark.parametrize(("party", "point"), CRASH_POINTS, ids=_ids(CRASH_POINTS))
async def test_crash_then_restart_settles_exactly_once(process_rail, party, point):
    await _crash_and_recover(process_rail, party, point, refused=False)


@pytest.mark.parametrize(("party", "point"), REFUSAL_CRASH_POINTS,
                         ids=_ids(REFUSAL_CRASH_POINTS))
async def test_crash_then_restart_refused_payment_is_refunded_once(process_rail, party, point):
    await _crash_and_recover(process_rail, party, point, refused=True)


# --- bank B killed from outside ---------------------------------------------------------------


@pytest.mark.parametrize("refused", [False, True], ids=["accepted", "refused"])
async def test_bank_b_down_keeps_payment_processing_until_it_returns(process_rail, refused):
    started = time.monotonic()
    rail: ProcessRail = process_rail()
    p = Parties(rail)
    p.t0 = started
    p.mark("rail up")
    try:
        await p.seed()
        p.mark("seeded")
        payee = MISSING_PAYEE if refused else p.payee
        rail.kill(B)
        assert rail.returncode(B) == -signal.SIGKILL
        p.mark(f"{B} killed from outside")

        answer = await p.pay(payee)
        p.mark(f"paid: {answer!r}")
        assert isinstance(answer, dict) and answer["status"] == "processing", answer
        # Nothing is decided by a timeout: for a few seconds (several retries of both the
        # outbox at A and the delivery worker at central) the transfer stays prepared, the
        # payment processing, the payer debited once, the amount in central's in_flight.
        deadline = time.monotonic() + 2.5
        checks = 0
        for _ in range(100):
            transfers = (await p.central.transfers(limit=10))["transfers"]
            assert [t["status"] for t in transfers] == ["prepared"], transfers
            assert [i["status"] for i in await p.outbound()] == ["processing"]
            assert (await p.payer_view())["balance_fen"] == TOPUP_FEN - AMOUNT_FEN
            assert (await p.central.audit())["in_flight_fen"] == AMOUNT_FEN
            checks += 1
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.25)
        assert checks >= 3
        p.mark(f"still prepared/processing after {checks} checks")
        # Central and A balance between themselves while the amount is in flight.
        balanced, lines = await audit_rail(rail.central_url, CENTRAL_TOKEN,
                                           {A: rail.audit_banks()[A]})
        assert balanced, "\n".join(lines)

        rail.restart(B)
        p.mark(f"{B} restarted")
        await _assert_final(p, payee, "rejected" if refused else "settled")
    finally:
        await p.aclose()


# --- a wallet's retry racing the refund of a refused payment ------------------------------

async def _wait_for_waiters(monitor, want: int, timeout_s: float) -> int:
    return await poll(lambda: lock_waiters(monitor, "%FROM wallets%FOR UPDATE%"),
                      lambda count: count >= want, timeout_s=timeout_s)


async def test_wallet_retry_racing_a_refusal_does_not_deadlock(process_rail):
    """A payment to a wallet B does not have, with B down: A's payment is `processing`. The
    test holds the payer's wallet row lock at A's database, lets the wallet re-send the same
    payment (it queues on the lock), brings B back so that A's outbox learns `rejected` and
    starts the refund (it queues too), then lets go. Both must finish: the retry answered
    with the first payment or its refusal, the refund done once, and no deadlock."""
    started = time.monotonic()
    rail: ProcessRail = process_rail()
    p = Parties(rail)
    p.t0 = started
    slow = BankClient(rail.bank_urls[A], operator_token=BANK_TOKENS[A], timeout_s=60,
                      transport=_no_keepalive())
    url = psycopg_url(rail.database_urls[A])
    holder = await psycopg.AsyncConnection.connect(url)
    monitor = await psycopg.AsyncConnection.connect(url, autocommit=True)
    retry = None
    try:
        await p.seed()
        rail.kill(B)
        answer = await p.pay(MISSING_PAYEE)
        assert isinstance(answer, dict) and answer["status"] == "processing", answer
        p.mark("paid with B down: processing")

        await holder.execute("SELECT wallet_id FROM wallets WHERE wallet_id = %s FOR UPDATE",
                             (p.payer,))

        async def resend() -> dict | RailError:
            try:
                return await slow.send("/v1/payments", p.envelope)
            except RailError as exc:
                return exc

        retry = asyncio.create_task(resend())
        assert await _wait_for_waiters(monitor, 1, 10) == 1, "the retry did not queue"
        p.mark("the wallet's retry waits for the payer's wallet")
        rail.restart(B)
        p.mark(f"{B} restarted")
        waiters = await _wait_for_waiters(monitor, 2, SETTLE_TIMEOUT_S)
        assert waiters == 2, f"the refund did not queue ({waiters} waiter(s))\n{rail.logs()}"
        assert not retry.done()
        p.mark("the refund waits for the payer's wallet too")
        await holder.rollback()
        again = await asyncio.wait_for(retry, 30)
        p.mark(f"retry answered: {again!r}")

        await _assert_final(p, MISSING_PAYEE, "rejected")
        log = rail.log_tail(A, 200_000)
        assert "deadlock detected" not in log, log[-4000:]
        ok = (isinstance(again, dict) and again.get("repeated") is True) or (
            isinstance(again, RailError) and again.code == "unknown_wallet")
        assert ok, f"the wallet's retry was answered {again!r}"
    finally:
        if retry is not None and not retry.done():
            retry.cancel()
        await holder.close()
        await monitor.close()
        await slow.aclose()
        await p.aclose()
