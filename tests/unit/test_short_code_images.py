"""The short payment code as a till's scanner meets it: its QR is version 1-4 and its
Code 128 barcode and QR both read back with zbar (the reader most POS scanners' software
builds on) from a small, slightly blurred picture."""

import io
import random

import pytest
from PIL import Image, ImageFilter

from rail_protocol import short_code as sc
from wallet_app.core import qrimage

pyzbar = pytest.importorskip("pyzbar.pyzbar", reason="zbar: scripts/test installs libzbar0")
segno = pytest.importorskip("segno")


def some_codes(count: int = 20) -> list[str]:
    rng = random.Random(7)
    return [sc.make_short_code(rng.randbytes(32), f"{rng.randrange(100):02d}",
                               f"{rng.randrange(10**8):08d}", at_ms=rng.randrange(10**13),
                               sequence=rng.randrange(5), pin_verified=rng.random() < 0.5).text
            for _ in range(count)]


def zbar(image: Image.Image) -> list[str]:
    return [found.data.decode() for found in pyzbar.decode(image)]


@pytest.mark.parametrize("text", some_codes())
def test_the_qr_is_at_most_version_4_and_reads_back_at_200_px_blurred(text):
    assert segno.make_qr(text, error="m").version <= 4
    image = Image.open(io.BytesIO(qrimage.to_png(text, scale=10))).convert("L")
    small = image.resize((200, 200), Image.Resampling.BILINEAR)
    blurred = small.filter(ImageFilter.GaussianBlur(radius=1.2))
    assert zbar(blurred) == [text]


@pytest.mark.parametrize("text", some_codes(10))
def test_the_barcode_reads_back_blurred(text):
    image = Image.open(io.BytesIO(qrimage.barcode_png(text, module_px=3))).convert("L")
    blurred = image.filter(ImageFilter.GaussianBlur(radius=1.0))
    assert zbar(blurred) == [text]


def test_a_blur_that_destroys_the_code_is_not_read():
    """The test can fail: a picture too blurred to read gives nothing."""
    text = some_codes(1)[0]
    image = Image.open(io.BytesIO(qrimage.to_png(text, scale=10))).convert("L")
    ruined = image.resize((200, 200)).filter(ImageFilter.GaussianBlur(radius=8))
    assert zbar(ruined) == []


def test_the_digits_are_grouped_for_reading_aloud():
    assert qrimage.group_digits("8110123456700000000") == "8110 1234 5670 0000 000"
