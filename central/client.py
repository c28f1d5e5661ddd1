"""Central's HTTP client: what bank nodes, the CLI and the tests talk to central with."""

from __future__ import annotations

from rail_protocol.envelope import seal
from rail_protocol.keys import SigningKey
from rail_service.client import JSONClient

from central.services import ISSUE, REDEEM, REGISTER_BANK


class CentralClient(JSONClient):
    async def identity(self) -> dict:
        return await self.request("GET", "/v1/central")

    async def register_bank(self, key: SigningKey, bank_id: str, name: str) -> dict:
        env = seal(key, REGISTER_BANK, {"bank_id": bank_id, "name": name,
                                        "public_key": key.public_key.to_text()})
        return await self.request("POST", "/v1/banks", env.to_dict())

    async def deposit_reserves(self, bank_id: str, deposit_id: str, amount_fen: int) -> dict:
        return await self.request("POST", f"/v1/banks/{bank_id}/reserve-deposits",
                                  {"deposit_id": deposit_id, "amount_fen": amount_fen})

    async def issue(self, key: SigningKey, bank_id: str, amount_fen: int,
                    instruction_id: str | None = None) -> dict:
        env = seal(key, ISSUE, {"bank_id": bank_id, "amount_fen": amount_fen}, id=instruction_id)
        return await self.request("POST", "/v1/issuance", env.to_dict())

    async def redeem(self, key: SigningKey, bank_id: str, amount_fen: int,
                     instruction_id: str | None = None) -> dict:
        env = seal(key, REDEEM, {"bank_id": bank_id, "amount_fen": amount_fen}, id=instruction_id)
        return await self.request("POST", "/v1/redemption", env.to_dict())

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
