"""The tamper-evident registry at central (docs/registry.md): the sealer that chains
committed journal entries, and the signed checkpoints.

Money writers never wait on the chain: they commit journal entries as before, and the
sealer, one pass at a time in central's background loop, chains what has committed since
its last pass, in entry id order, in its own short transaction. A checkpoint is signed
after a pass that left nothing unchained, at most every `checkpoint_interval_ms`."""

from __future__ import annotations

import logging

import orjson
from sqlalchemy.ext.asyncio import AsyncEngine

from central import chain
from central.adapters import chain_sql
from central.adapters import registry_sql as sql
from central.adapters.batch_store import BatchStore
from rail_protocol.envelope import now_ms, sign_statement
from rail_protocol.errors import RailError
from rail_protocol.keys import PublicKey, SigningKey
from rail_service.db import read_snapshot

log = logging.getLogger("yuanrail.central.registry")


class Registry:
    """Chain the journal, sign checkpoints, serve the latest."""

    def __init__(self, engine: AsyncEngine, store: BatchStore, key: SigningKey, *,
                 checkpoint_interval_ms: int = 5_000, seal_batch_size: int = 1_000) -> None:
        self.engine, self.store, self.key = engine, store, key
        self.checkpoint_interval_ms = checkpoint_interval_ms
        self.seal_batch_size = seal_batch_size
        self._last_signed_ms = 0

    async def seal_once(self) -> int:
        """Chain up to `seal_batch_size` committed entries after the head, in one
        transaction that holds the head's row lock; returns how many."""
        async with self.store.transaction() as tx:
            seq, head = await tx.lock_head()
            pending = await tx.unsealed(self.seal_batch_size)
            if not pending:
                return 0
            links = chain.seal(seq, head, [entry for entry, _transfer in pending])
            deltas: dict[str, int] = {}
            for entry, transfer in pending:
                chain.add_deltas(deltas, chain.chain_deltas(entry, transfer))
            await tx.write_links(links)
            await tx.add_totals(deltas)
            _entry, last_seq, last_hash = links[-1]
            await tx.set_head(last_seq, last_hash)
        return len(links)

    async def checkpoint_now(self) -> dict:
        """Sign the checkpoint of the current head (with the running totals as of it) and
        store it; the head's row lock keeps the sealer from moving it meanwhile."""
        async with self.engine.begin() as conn:
            seq, head = await chain_sql.lock_head(conn)
            totals = await chain_sql.totals(conn)
            bank_ids = await sql.bank_ids(conn)
            now = now_ms()
            statement = sign_statement(self.key, chain.checkpoint(seq, head, totals,
                                                                  bank_ids, now))
            await chain_sql.save_checkpoint(conn, statement, now)
        self._last_signed_ms = now
        return statement

    async def work(self) -> int:
        """One pass of the background loop: seal what committed; when nothing is left
        unchained and the interval has passed, sign a checkpoint."""
        sealed = 0
        while True:
            count = await self.seal_once()
            sealed += count
            if count < self.seal_batch_size:
                break
        if now_ms() - self._last_signed_ms >= self.checkpoint_interval_ms:
            await self.checkpoint_now()
        return sealed

    async def latest(self) -> dict:
        async with self.engine.connect() as conn:
            row = await chain_sql.latest_checkpoint(conn)
        if row is None:
            raise RailError("not_found", "no checkpoint has been signed yet")
        return orjson.loads(row.statement)


# --- offline verification (yuanrail audit --verify-chain) ---------------------------------

async def verify_database(engine: AsyncEngine,
                          central_key: PublicKey | None = None) -> chain.ChainReport:
    """Verify central's whole chain as stored in its database (see chain.ChainVerifier):
    every link, and every stored checkpoint against the links."""
    async with read_snapshot(engine) as conn:   # the chain and its checkpoints at once
        verifier = chain.ChainVerifier(await chain_sql.all_checkpoints(conn), central_key)
        async for seq, stored, entry, transfer in chain_sql.links(conn):
            verifier.feed(seq, stored, entry, transfer)
        report = verifier.finish(await chain_sql.unsealed_count(conn))
        orphans = await chain_sql.orphan_postings(conn)
    if orphans:
        report.problems.append(f"{orphans} posting(s) belong to no journal entry")
    return report


async def export_chain(engine: AsyncEngine) -> dict:
    """The whole chain and its checkpoints as one JSON object, for `chain.verify_export`."""
    async with read_snapshot(engine) as conn:   # the chain and its checkpoints at once
        links = [{"seq": seq, "hash": stored, "entry": entry.body(),
                  "transfer": list(transfer) if transfer else None}
                 async for seq, stored, entry, transfer in chain_sql.links(conn)]
        return {"links": links, "checkpoints": await chain_sql.all_checkpoints(conn),
                "unsealed": await chain_sql.unsealed_count(conn)}
