"""Central's HTTP client: what bank nodes, the CLI and the tests talk to central with."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from rail_protocol.batches import MissingRoutes, batch_results, open_results, seal_batch
from rail_protocol.envelope import MAX_TTL_MS, Envelope, new_id, now_ms, seal, sign
from rail_protocol.errors import CODES, RailError
from rail_protocol.keys import PublicKey, SigningKey
from rail_service.client import JSONClient, RemoteError

from rail_protocol.instruction_types import CENTRAL_ISSUE, CENTRAL_REDEEM, REGISTER_BANK, TRANSFER


def new_transfer_id(from_bank: str) -> str:
    """A transfer id as docs/interbank.md makes them: `<bank_id>.<32 hex>`."""
    return f"{from_bank}.{new_id()}"


def transfer_envelope(key: SigningKey, from_bank: str, to_bank: str, amount_fen: int,
                      payee_wallet: str, *, transfer_id: str | None = None,
                      ttl_ms: int = MAX_TTL_MS, created_ms: int | None = None) -> Envelope:
    """Message 1, signed by bank A. Store it before sending and send the very same envelope
    again to learn the outcome: a re-signed one with other times is another instruction."""
    transfer_id = transfer_id or new_transfer_id(from_bank)
    return seal(key, TRANSFER, {"transfer_id": transfer_id, "from_bank": from_bank,
                                "to_bank": to_bank, "amount_fen": amount_fen,
                                "payee_wallet": payee_wallet}, id=transfer_id, ttl_ms=ttl_ms,
                created_ms=created_ms)


def registration_envelope(key: SigningKey, bank_id: str, name: str,
                          url: str | None = None) -> Envelope:
    """A bank's request to be enrolled, signed by its own key (proof that it holds the key
    central will certify). Central's operator submits it: a bank never enrols itself."""
    body = {"bank_id": bank_id, "name": name, "public_key": key.public_key.to_text()}
    if url is not None:
        body["url"] = url
    return seal(key, REGISTER_BANK, body)


CENTRAL = "central"   # the one peer of a CentralClient, for MissingRoutes


class CentralClient(JSONClient):
    # Envelopes sealed for a caller's instruction id, so that calling again with the same id
    # and the same body resends the very same envelope (a retry), not a new one.
    SEALED_KEPT = 1_000

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._sealed: OrderedDict[tuple[str, str, str], Envelope] = OrderedDict()
        self.without_sealed_route = MissingRoutes()   # central answered 404 to a sealed batch

    def _seal_once(self, key: SigningKey, kind: str, body: dict,
                   instruction_id: str | None) -> Envelope:
        """A new envelope, or, for an instruction id this client sealed before with the same
        body and still live, that envelope again."""
        if instruction_id is None:
            return seal(key, kind, body)
        slot = (key.public_key.key_id, kind, instruction_id)
        kept = self._sealed.get(slot)
        if kept is not None and kept.body == body and kept.expires_ms > now_ms():
            return kept
        env = self._sealed[slot] = seal(key, kind, body, id=instruction_id)
        while len(self._sealed) > self.SEALED_KEPT:
            self._sealed.popitem(last=False)
        return env

    async def identity(self) -> dict:
        return await self.request("GET", "/v1/central")

    async def register_bank(self, key: SigningKey, bank_id: str, name: str, *,
                            url: str | None = None) -> dict:
        """Enrol a bank (central's operator credential), with the bank's signed request."""
        env = registration_envelope(key, bank_id, name, url)
        return await self.request("POST", "/v1/banks", env.to_dict())

    async def deposit_reserves(self, bank_id: str, deposit_id: str, amount_fen: int) -> dict:
        return await self.request("POST", f"/v1/banks/{bank_id}/reserve-deposits",
                                  {"deposit_id": deposit_id, "amount_fen": amount_fen})

    async def issue(self, key: SigningKey, bank_id: str, amount_fen: int,
                    instruction_id: str | None = None) -> dict:
        env = self._seal_once(key, CENTRAL_ISSUE, {"bank_id": bank_id, "amount_fen": amount_fen},
                              instruction_id)
        return await self.request("POST", "/v1/issuance", env.to_dict())

    async def redeem(self, key: SigningKey, bank_id: str, amount_fen: int,
                     instruction_id: str | None = None) -> dict:
        env = self._seal_once(key, CENTRAL_REDEEM, {"bank_id": bank_id, "amount_fen": amount_fen},
                              instruction_id)
        return await self.request("POST", "/v1/redemption", env.to_dict())

    async def transfer(self, env: Envelope | dict[str, Any]) -> dict:
        """Send message 1 (first time or again): {"status", "statement"} signed by central."""
        body = env.to_dict() if isinstance(env, Envelope) else env
        return await self.request("POST", "/v1/transfers", body)

    async def transfers_batch(self, envs: list[Envelope | dict[str, Any]]
                              ) -> list[dict | RailError]:
        """Send many message 1s in one call (`POST /v1/transfers/batch`, at most
        MAX_ITEMS): per envelope, in order, what `transfer` would return for it, or the
        RailError it would raise. The call as a whole failing (a transport error, a non-200,
        an answer without one item per envelope) raises, and then nothing is an answer."""
        body = {"transfers": [e.to_dict() if isinstance(e, Envelope) else e for e in envs]}
        results = batch_results(await self.request("POST", "/v1/transfers/batch", body),
                                len(envs))
        if results is None:
            raise RailError("upstream_unavailable", "central's batch answer has not one "
                                                    "item per transfer")
        return [_answer_of(item) for item in results]

    async def transfers_sealed(self, key: SigningKey, central_key: PublicKey,
                               envs: list[Envelope]) -> tuple[list[dict | RailError], bool]:
        """Message 1s (made with `envelope.unsigned` for the bank's `key`) in one sealed
        batch (`POST /v1/transfers/sealed-batch`, rail_protocol/batches.py): per envelope,
        in order, what `transfers_batch` would return for it, the statements checked by the
        answer's one signature from `central_key`. To a central without that route (a 404,
        remembered for SEALED_RECHECK_S, then asked again) each is signed and
        `transfers_batch` used. The second value says whether the statements came sealed.
        An answer that is not central's, or not one item per envelope, raises: nothing in it
        is an answer."""
        if not self.without_sealed_route.missing(CENTRAL):
            try:
                answer = await self.request("POST", "/v1/transfers/sealed-batch",
                                            seal_batch(key, "transfers", envs))
            except RailError as exc:
                if exc.code != "not_found":
                    raise
                self.without_sealed_route.mark(CENTRAL)
            else:
                if open_results(answer, central_key, len(envs), field="statement") is None:
                    raise RailError("upstream_unavailable", "central's sealed answer is not "
                                    "central's, or has not one item per transfer")
                return [_answer_of(item) for item in answer["results"]], True
        return await self.transfers_batch([sign(key, env) for env in envs]), False

    async def get_transfer(self, transfer_id: str) -> dict:
        return await self.request("GET", f"/v1/transfers/{transfer_id}")

    async def transfers(self, status: str | None = None, limit: int = 100) -> dict:
        params: dict[str, Any] = {"limit": limit}
        if status is not None:
            params["status"] = status
        return await self.request("GET", "/v1/transfers", **params)

    async def bank(self, bank_id: str) -> dict:
        return await self.request("GET", f"/v1/banks/{bank_id}")

    async def certificate(self, bank_id: str) -> dict:
        return await self.request("GET", f"/v1/banks/{bank_id}/certificate")

    async def supply(self) -> dict:
        return await self.request("GET", "/v1/supply")

    async def journal(self, after: int = 0, limit: int = 100) -> dict:
        return await self.request("GET", "/v1/journal", after=after, limit=limit)

    async def audit(self) -> dict:
        return await self.request("GET", "/v1/audit")

    async def latest_checkpoint(self, key: SigningKey | None = None) -> dict:
        """Central's latest signed checkpoint: read with the operator credential, or signed
        by `key` (a registered bank's). The caller verifies it (central.chain)."""
        path = "/v1/checkpoints/latest"
        if key is None:
            return await self.request("GET", path)
        return await self.signed_request(key, "GET", path)


def _answer_of(item: object) -> dict | RailError:
    """One item of a batch answer: central's answer, or its typed refusal as the single
    call raises it (an unknown code or a malformed item is `upstream_unavailable`)."""
    if isinstance(item, dict) and "error" not in item:
        return item
    error = item.get("error") if isinstance(item, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    if code not in CODES:
        return RailError("upstream_unavailable", f"central's batch item: {item!r:.200}")
    return RemoteError(code, error.get("message"))
