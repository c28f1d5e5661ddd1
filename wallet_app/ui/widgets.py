"""Widgets the screens share: QR code and barcode images, and the common styles (common.kv)."""

from __future__ import annotations

import io
from pathlib import Path

from kivy.core.image import Image as CoreImage
from kivy.lang import Builder
from kivy.properties import StringProperty
from kivy.uix.image import Image

from wallet_app.core import qrimage

Builder.load_file(str(Path(__file__).with_name("common.kv")))


class CodeImage(Image):
    """Shows `data` as a code drawn by `draw` (text -> PNG), scaled up with no smoothing, so
    the code stays sharp at any size (and readable from a screenshot)."""

    data = StringProperty("")

    def draw(self, data: str) -> bytes:
        raise NotImplementedError

    def on_data(self, *_args) -> None:
        if not self.data:
            self.texture = None
            return
        texture = CoreImage(io.BytesIO(self.draw(self.data)), ext="png", nocache=True).texture
        texture.mag_filter = "nearest"
        texture.min_filter = "nearest"
        self.texture = texture


class QRCodeImage(CodeImage):
    """A QR code, one texel per module."""

    def draw(self, data: str) -> bytes:
        return qrimage.to_png(data, scale=1, border=4)


class BarcodeImage(CodeImage):
    """The short payment code's Code 128 barcode."""

    def draw(self, data: str) -> bytes:
        return qrimage.barcode_png(data, module_px=2, height_px=40)
