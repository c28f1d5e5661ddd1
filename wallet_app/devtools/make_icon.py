"""Draw the app icon, wallet_app/ui/assets/icon.png (512 x 512): a white 元 on a red
rounded square. Uses the bundled subset font (wallet_app/ui/assets/fonts), else Noto Sans
CJK SC from fonts-noto-cjk.

    .venv/bin/python -m wallet_app.devtools.make_icon"""

from __future__ import annotations

import sys
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

ASSETS = Path(__file__).resolve().parents[1] / "ui" / "assets"
ICON = ASSETS / "icon.png"
SIZE = 512
RED = (200, 16, 46, 255)
NOTO_TTC = Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc")
NOTO_SC_INDEX = 2  # JP, KR, SC, TC, HK in the collection


def font(size: int) -> ImageFont.FreeTypeFont:
    bundled = sorted((ASSETS / "fonts").glob("*.otf"))
    if bundled:
        return ImageFont.truetype(str(bundled[0]), size)
    return ImageFont.truetype(str(NOTO_TTC), size, index=NOTO_SC_INDEX)


def draw(path: Path = ICON) -> Path:
    image = Image.new("RGBA", (SIZE, SIZE), (0, 0, 0, 0))
    pen = ImageDraw.Draw(image)
    pen.rounded_rectangle((16, 16, SIZE - 16, SIZE - 16), radius=96, fill=RED)
    pen.text((SIZE / 2, SIZE / 2 - 24), "元", font=font(300), fill="white", anchor="mm",
             stroke_width=6, stroke_fill="white")
    pen.text((SIZE / 2, SIZE - 88), "e-CNY", font=font(64), fill=(255, 236, 180, 255),
             anchor="mm")
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, optimize=True)
    return path


if __name__ == "__main__":
    print(draw(Path(sys.argv[1]) if len(sys.argv) > 1 else ICON))
