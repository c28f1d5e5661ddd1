"""The baseline's Locust user: the rail's request shape (a signed payment envelope, POSTed as
JSON over a kept-alive connection, judged the same way) sent to loadtests/noop_app.py, which
does nothing with it. Its requests/s is what Python, HTTP and this machine allow before any
rail work is done. Host: YUANRAIL_LOAD_NOOP_URL (or --host)."""

from __future__ import annotations

import os

import orjson
from locust import FastHttpUser, constant, task

import locustfile as rail
from rail_protocol.envelope import seal
from rail_protocol.keys import SigningKey


class NoopUser(FastHttpUser):
    wait_time = constant(float(os.environ.get("YUANRAIL_LOAD_WAIT_S", "0")))
    host = os.environ.get("YUANRAIL_LOAD_NOOP_URL", "http://127.0.0.1:8799")
    max_retries = 0

    def on_start(self) -> None:
        key = SigningKey.generate(engine="openssl")
        self.body = orjson.dumps(seal(key, rail.PAY, {
            "payer_wallet": "noop.0000", "payee_wallet": "noop.0001",
            "amount_fen": 100}).to_dict())

    @task
    def noop(self) -> None:
        with self.client.post("/v1/noop", data=self.body, headers=rail.JSON_HEADERS,
                              name="noop", catch_response=True) as response:
            rail.judge(response, None)
