"""QR codes as pictures: read them from image files and camera frames, draw them as PNG;
and the short payment code's Code 128 barcode, drawn with python-barcode.

Reading uses zxing-cpp (a compiled wheel; the `wallet` extra installs it) over a Pillow
image; drawing uses segno, as the rail's own QR module does. Neither imports Kivy: the
scanner widget hands raw RGBA frames to `decode_rgba`."""

from __future__ import annotations

import io
from pathlib import Path

import segno

from wallet_app.core.errors import WalletError
from wallet_app.core.i18n import N_

MAX_IMAGE_BYTES = 20 * 1024 * 1024
MAX_IMAGE_PIXELS = 40_000_000


def _zxing():
    try:
        import zxingcpp
    except ImportError:  # pragma: no cover - the wallet extra installs it
        raise WalletError("no_qr_reader", "no QR reader installed: pip install zxing-cpp"
                          ) from None
    return zxingcpp


def _read(image) -> list[str]:
    zxingcpp = _zxing()
    found = zxingcpp.read_barcodes(image, formats=zxingcpp.BarcodeFormat.QRCode)
    return [code.text for code in found if code.valid and code.text]


def decode_image_bytes(data: bytes) -> list[str]:
    """Texts of the QR codes in an encoded image (PNG, JPEG, ...)."""
    from PIL import Image, UnidentifiedImageError

    if len(data) > MAX_IMAGE_BYTES:
        raise WalletError("unreadable_code", N_("the image is too large"))
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.width * image.height > MAX_IMAGE_PIXELS:
                raise WalletError("unreadable_code", N_("the image is too large"))
            return _read(image.convert("L"))
    except (UnidentifiedImageError, OSError, ValueError):
        raise WalletError("unreadable_code", N_("the file is not an image")) from None


def decode_image_file(path: str | Path) -> list[str]:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise WalletError("unreadable_code", f"cannot open {path}: {exc.strerror}") from None
    return decode_image_bytes(data)


def decode_rgba(pixels: bytes, width: int, height: int, *, flip: bool = False) -> list[str]:
    """Texts of the QR codes in a raw RGBA frame (a camera texture's pixels)."""
    from PIL import Image, ImageOps

    image = Image.frombytes("RGBA", (width, height), pixels).convert("L")
    if flip:  # OpenGL textures are bottom-up
        image = ImageOps.flip(image)
    return _read(image)


def single_code(texts: list[str]) -> str:
    """The one code found, or a refusal saying there were none or several."""
    if not texts:
        raise WalletError("unreadable_code", N_("no QR code could be read in the picture"))
    if len(set(texts)) > 1:
        raise WalletError("unreadable_code", N_("the picture holds more than one QR code"))
    return texts[0]


def to_png(text: str, scale: int = 8, border: int = 4) -> bytes:
    """A PNG of `text` as a QR code (error correction M), any text: payment codes and
    receive codes as well as merchant codes."""
    out = io.BytesIO()
    segno.make_qr(text, error="m", encoding="utf-8").save(out, kind="png", scale=scale,
                                                          border=border)
    return out.getvalue()


def barcode_png(digits: str, module_px: int = 3, height_px: int = 80) -> bytes:
    """A PNG of `digits` as a Code 128 barcode (a cashier's laser scanner reads it), each
    module `module_px` pixels wide (2 or more: python-barcode cannot draw 1), with a quiet
    zone and no text under it."""
    if module_px < 2:
        raise ValueError("a module is at least 2 pixels wide")
    import barcode
    from barcode.writer import ImageWriter

    dpi = 254                                  # 10 pixels a millimetre
    out = io.BytesIO()
    barcode.get("code128", digits, writer=ImageWriter()).write(out, options={
        "module_width": module_px / 10, "module_height": height_px / 10,
        "quiet_zone": 10 * module_px / 10, "write_text": False, "dpi": dpi})
    return out.getvalue()


def group_digits(digits: str) -> str:
    """19 digits as a person reads them aloud or types them: 4 4 4 4 3."""
    return " ".join(digits[i:i + 4] for i in range(0, len(digits), 4))
