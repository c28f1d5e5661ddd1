"""Bootstrap: the one place a bank node is wired together from its settings."""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI

from bank.adapters.hot_state import HotState
from bank.api import router
from bank.api_holds import router as holds_router
from bank.api_merchants import router as merchant_router
from bank.charges import Charges
from bank.checkpoints import CheckpointWatch
from bank.checkpoints import router as checkpoint_router
from bank.config import BankSettings
from bank.credit_engine import credit_engine_routes
from bank.credit_engine import install as install_batched_credits
from bank.dashboard import install as install_dashboard
from bank.holds import Holds
from bank.offline import Offline
from bank.merchants import MerchantDesk
from bank.payment_engine import install as install_payment_engine
from bank.payment_engine import payment_engine_routes
from bank.pin_guards import PinGuards
from bank.services import Bank
from central.client import CentralClient
from rail_service.background import Background, Loop
from rail_service.db import make_engine
from rail_service.hot_edge import HotRoutes
from rail_service.http import JSON, install_error_handlers
from rail_service.keyfile import load_or_create_key

log = logging.getLogger("yuanrail.bank")


def build_bank(settings: BankSettings) -> Bank:
    return Bank(
        bank_id=settings.bank_id, name=settings.name,
        engine=make_engine(settings.database_url, pool_size=settings.db_pool_size),
        key=load_or_create_key(settings.key_file),
        hot=HotState(settings.redis_url, settings.redis_prefix,
                     rate_per_s=settings.rate_limit_per_s),
        central=CentralClient(settings.central_url),
        operator_token=settings.operator_token, public_url=settings.public_url,
        vault_low_fen=settings.vault_low_fen, vault_target_fen=settings.vault_target_fen,
        vault_high_fen=settings.vault_high_fen, connect_at_start=settings.connect_at_start,
        no_pin_threshold_fen=settings.no_pin_threshold_fen,
    )


def create_app(settings: BankSettings | None = None, bank: Bank | None = None) -> HotRoutes:
    """The bank node's FastAPI app behind its hot edge (rail_service/hot_edge.py), which
    serves the batched calls itself and stands in for the app otherwise (`.state`, ...)."""
    settings = settings or BankSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        node = bank or build_bank(settings)
        await node.start()
        app.state.bank = node
        app.state.desk = desk = MerchantDesk(
            node, allowed_hosts=settings.webhook_allowed_hosts)
        app.state.charges = Charges(node, transport=node.peer_transport,
                                        code_issuers=settings.code_issuers)
        app.state.holds = holds = Holds(node, min_life_ms=settings.hold_min_life_ms)
        app.state.offline = Offline(node, holds)
        app.state.pin_guards = PinGuards(node)
        app.state.checkpoints = watch = CheckpointWatch(
            node, check_s=settings.checkpoint_check_s, confirm_s=settings.checkpoint_confirm_s)
        background = Background(node.engine, f"yuanrail:bank:{node.bank_id}:background", [
            Loop("outbox", node.outbox.run_once, busy_s=0.2, idle_s=1.0),
            Loop("vault", node.vault.keep, busy_s=1.0, idle_s=1.0),
            Loop("webhooks", desk.deliver_webhooks, busy_s=0.3, idle_s=0.6),
            Loop("holds", holds.expire_due, busy_s=0.5, idle_s=5.0),
            Loop("credits", node.fold_credits, busy_s=1.0, idle_s=2.0),
            Loop("positions", node.fold_positions, busy_s=1.0, idle_s=2.0),
            Loop("checkpoint", watch.work, busy_s=settings.checkpoint_check_s,
                 idle_s=settings.checkpoint_check_s)])
        if settings.run_workers:
            background.start()
        try:
            yield
        finally:
            await background.aclose()
            await desk.aclose()
            await node.central.aclose()
            await node.hot.close()
            await node.engine.dispose()

    app = FastAPI(title=f"yuanrail bank node {settings.bank_id}", version="0.1.0",
                  lifespan=lifespan, default_response_class=JSON)
    install_error_handlers(app, wrong_tries_per_address=settings.wrong_tries_per_address)
    # The payment engine: payments, orders and charges decided and written in batches (its
    # batchers start in the lifespan, its routes are the hot edge's), and message 2s from
    # central credited the same way.
    install_payment_engine(app)
    install_batched_credits(app)
    install_dashboard(app, settings)   # after the payment engine: it shows its counts
    app.include_router(router)
    app.include_router(merchant_router)
    app.include_router(checkpoint_router)
    app.include_router(holds_router)
    return HotRoutes(app, {**payment_engine_routes(), **credit_engine_routes()})
