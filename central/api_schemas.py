"""The shapes of central's answers, as its OpenAPI document states them (see
rail_service/openapi.py). Answers may gain fields; the ones named required are always there."""

from rail_service.openapi import (
    BOOL, FEN, INT, MS, SIGNED_FEN, TEXT, array, nullable, obj, one_of,
)

HEALTH = obj({"status": one_of("ok")})
IDENTITY = obj({"key_id": TEXT, "public_key": TEXT, "currency": one_of("CNY")})
CERTIFICATE = obj({"type": one_of("central.bank_certificate"), "bank_id": TEXT, "name": TEXT,
                   "public_key": TEXT, "key_id": TEXT, "issued_ms": MS, "issuer": TEXT,
                   "sig": TEXT})
NODE = obj({"bank_id": TEXT, "url": nullable(TEXT), "certificate": CERTIFICATE})
BANK_LINE = obj({"bank_id": TEXT, "reserves_fen": FEN, "holding_fen": FEN})
BANK = obj({"bank_id": TEXT, "reserves_fen": FEN, "holding_fen": FEN, "name": TEXT,
            "key_id": TEXT, "certificate": CERTIFICATE}, {"url": nullable(TEXT)})
RESERVES = obj({"bank_id": TEXT, "reserves_fen": FEN, "holding_fen": FEN, "entry_id": INT})
RECEIPT = obj({"status": one_of("done"), "receipt": obj({
    "type": one_of("central.receipt"), "instruction_id": TEXT, "instruction_type": TEXT,
    "amount_fen": FEN, "at_ms": MS, "bank_id": TEXT, "reserves_fen": FEN, "holding_fen": FEN,
    "entry_id": INT, "issuer": TEXT, "sig": TEXT})})
SUPPLY = obj({"currency": one_of("CNY"), "total_issued_fen": FEN, "backing_fen": FEN,
              "in_flight_fen": FEN, "banks": array(BANK_LINE)})
JOURNAL = obj({"entries": array(obj({
    "entry_id": INT, "kind": TEXT, "bank_id": nullable(TEXT), "reference": TEXT,
    "created_ms": MS, "postings": array(obj({"account": TEXT, "amount_fen": SIGNED_FEN}))})),
}, {"next_after": nullable(INT)})
AUDIT = obj({"balanced": BOOL, "total_issued_fen": FEN, "backing_fen": FEN,
             "holdings_fen": FEN, "in_flight_fen": FEN, "entries": INT,
             "banks": array(BANK_LINE), "problems": array({})})
CHECKPOINT = obj({"type": one_of("central.checkpoint"), "seq": INT, "head_hash": TEXT,
                  "currency": one_of("CNY"), "total_supply_fen": FEN, "backing_fen": FEN,
                  "in_flight_fen": FEN, "banks": array(obj({
                      "bank_id": TEXT, "reserves_fen": FEN, "holding_fen": FEN,
                      "in_flight_out_fen": FEN, "in_flight_in_fen": FEN})),
                  "at_ms": MS, "issuer": TEXT, "sig": TEXT})
TRANSFER_STATUS = one_of("prepared", "settled", "rejected")
STATEMENT = obj({"status": TRANSFER_STATUS, "statement": obj({
    "type": one_of("central.transfer_status"), "transfer_id": TEXT, "status": TRANSFER_STATUS,
    "amount_fen": FEN, "from_bank": TEXT, "to_bank": TEXT, "issuer": TEXT, "sig": TEXT})})
STATEMENT_ERROR = obj({"error": obj({"code": TEXT, "message": TEXT})})
STATEMENTS = obj({"results": array({"anyOf": [STATEMENT, STATEMENT_ERROR]})})
SEALED_STATEMENTS = obj({"results": array({"anyOf": [obj({
    "status": TRANSFER_STATUS, "statement": obj({
        "type": one_of("central.transfer_status"), "transfer_id": TEXT,
        "status": TRANSFER_STATUS, "amount_fen": FEN, "from_bank": TEXT, "to_bank": TEXT,
        "issuer": TEXT})}), STATEMENT_ERROR]}), "issuer": TEXT, "sig": TEXT})
TRANSFER = obj({"transfer_id": TEXT, "from_bank": TEXT, "to_bank": TEXT, "amount_fen": FEN,
                "payee_wallet": TEXT, "status": TRANSFER_STATUS, "code": nullable(TEXT),
                "created_ms": MS, "updated_ms": MS})
TRANSFERS = obj({"transfers": array(TRANSFER)})
FIGURES = obj({"service": one_of("central"), "at_ms": MS, "supply": {"type": "object"},
               "interbank": {"type": "object"}, "settlement": {"type": "object"},
               "audit": {"type": "object"}, "alarms": {"type": "array"}})
