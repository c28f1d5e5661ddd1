"""Hot state in Redis, all of it rebuildable: losing Redis loses no money and lets no replay
through, because the database's unique keys are the authority. Redis only makes repeats
cheaper, rate-limits chatty wallets and carries notification streams."""

from __future__ import annotations

import logging

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from rail_service.instructions import Recorded

log = logging.getLogger("yuanrail.bank.redis")


class HotState:
    def __init__(self, url: str, prefix: str, *, rate_per_s: int = 50) -> None:
        self.redis = aioredis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
        self.prefix = prefix
        self.rate_per_s = rate_per_s

    async def close(self) -> None:
        await self.redis.aclose()

    async def admit(self, wallet_id: str, signer: str, instruction_id: str, ttl_ms: int,
                    now_ms: int) -> tuple[bool, bool]:
        """One round trip for the hot path: (within the wallet's rate, instruction seen
        before in its validity window). With Redis down: (True, False), and the database's
        unique key still stops a second effect."""
        rate_key = f"{self.prefix}:rate:{wallet_id}:{now_ms // 1000}"
        seen_key = f"{self.prefix}:seen:{signer}:{instruction_id}"
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.incr(rate_key).expire(rate_key, 2)
                pipe.set(seen_key, b"1", nx=True, px=max(ttl_ms, 1))
                count, _, fresh = await pipe.execute()
        except RedisError as exc:
            log.warning("hot state skipped, Redis unavailable: %r", exc)
            return True, False
        allowed = self.rate_per_s <= 0 or count <= self.rate_per_s
        return allowed, not fresh

    def _done_key(self, signer: str, instruction_id: str) -> str:
        return f"{self.prefix}:done:{signer}:{instruction_id}"

    def _stream_key(self, stream: str) -> str:
        return f"{self.prefix}:events:{stream}"

    async def remember(self, signer: str, instruction_id: str, digest: str, outcome: dict,
                       ttl_ms: int) -> None:
        """Cache a final outcome so a repeat is answered without the database."""
        await self.after_commit([(signer, instruction_id, digest, outcome, ttl_ms)], [], 0)

    async def recall(self, signer: str, instruction_id: str) -> Recorded | None:
        """The outcome `remember` cached, kept only while its instruction is live (no
        expiry of its own: the key's TTL is the instruction's)."""
        try:
            raw = await self.redis.get(self._done_key(signer, instruction_id))
        except RedisError:
            return None
        if not raw:
            return None
        cached = orjson.loads(raw)
        return Recorded(cached["digest"], None, outcome=cached["outcome"])

    async def publish(self, stream: str, event: dict) -> None:
        """Append to a bounded notification stream (a wallet's or a merchant's)."""
        try:
            await self.redis.xadd(self._stream_key(stream), {"event": orjson.dumps(event)},
                                  maxlen=1000, approximate=True)
        except RedisError as exc:
            log.warning("notification not published: %r", exc)

    async def after_commit(self, outcomes: list[tuple[str, str, str, dict, int]],
                           events: list[tuple[str, dict]], at_ms: int) -> None:
        """What follows a commit, in one pipeline, best effort: final outcomes cached for
        repeats ((signer, instruction id, digest, outcome, ttl ms)), and live notifications
        ((wallet id, event)) on the wallet's stream and, for an order, the order's (the
        cashier page listens there). Redis down loses neither: the database has it all."""
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for signer, instruction_id, digest, outcome, ttl_ms in outcomes:
                    pipe.set(self._done_key(signer, instruction_id),
                             orjson.dumps({"digest": digest, "outcome": outcome}),
                             px=max(ttl_ms, 1))
                for wallet_id, event in events:
                    data = {"event": orjson.dumps({**event, "wallet_id": wallet_id,
                                                   "at_ms": at_ms})}
                    pipe.xadd(self._stream_key(f"wallet:{wallet_id}"), data, maxlen=1000,
                              approximate=True)
                    if event.get("order_id"):
                        pipe.xadd(self._stream_key(f"order:{event['order_id']}"), data,
                                  maxlen=1000, approximate=True)
                await pipe.execute(raise_on_error=False)
        except RedisError as exc:
            log.warning("outcomes not cached, notifications not published: %r", exc)

    async def read_events(self, stream: str, after: str = "0-0", count: int = 100,
                          block_ms: int | None = None) -> list[tuple[str, dict]]:
        entries = await self.redis.xread({self._stream_key(stream): after},
                                         count=count, block=block_ms)
        out = []
        for _name, items in entries or []:
            for entry_id, fields in items:
                out.append((entry_id.decode(), orjson.loads(fields[b"event"])))
        return out
