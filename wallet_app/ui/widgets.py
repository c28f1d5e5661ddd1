"""Widgets the screens share: a QR code image, and the common styles (common.kv)."""

from __future__ import annotations

import io
from pathlib import Path

from kivy.core.image import Image as CoreImage
from kivy.lang import Builder
from kivy.properties import StringProperty
from kivy.uix.image import Image

from wallet_app.core import qrimage

Builder.load_file(str(Path(__file__).with_name("common.kv")))


class QRCodeImage(Image):
    """Shows `data` as a QR code, one texel per module scaled up with no smoothing, so the
    code stays sharp at any size (and readable from a screenshot)."""

    data = StringProperty("")

    def on_data(self, *_args) -> None:
        if not self.data:
            self.texture = None
            return
        png = qrimage.to_png(self.data, scale=1, border=4)
        texture = CoreImage(io.BytesIO(png), ext="png", nocache=True).texture
        texture.mag_filter = "nearest"
        texture.min_filter = "nearest"
        self.texture = texture
