"""Kivy's settings, which must be fixed before Kivy is first imported.

- `KIVY_NO_ARGS=1`: Kivy must not read the command line (ours, or pytest's).
- `KIVY_HOME`: where Kivy keeps its config and logs (the wallet's home, or a test's tmp).
- `KIVY_LOG_MODE=PYTHON`: Kivy logs through Python's logging and leaves the root logger
  alone.
- The window: a phone-sized 480x880 on a desktop. With no X server (DISPLAY unset) SDL2
  draws offscreen through Mesa, which is how the UI tests run."""

from __future__ import annotations

import os
import sys
from pathlib import Path

WIDTH, HEIGHT = 480, 880


def configure(kivy_home: Path | None = None, *, width: int = WIDTH, height: int = HEIGHT) -> None:
    if "kivy" in sys.modules:
        return  # too late to change anything; Kivy keeps what it was started with
    os.environ["KIVY_NO_ARGS"] = "1"
    os.environ.setdefault("KIVY_LOG_MODE", "PYTHON")
    os.environ.setdefault("KIVY_NO_FILELOG", "1")
    if sys.platform.startswith("linux") and "ANDROID_ARGUMENT" not in os.environ:
        os.environ.setdefault("KIVY_CLIPBOARD", "sdl2")  # not xclip/xsel, often missing
    if kivy_home is not None:
        kivy_home.mkdir(parents=True, exist_ok=True)
        os.environ["KIVY_HOME"] = str(kivy_home)
    from kivy.config import Config

    Config.set("graphics", "width", str(width))
    Config.set("graphics", "height", str(height))
    Config.set("graphics", "resizable", "1")
    Config.set("input", "mouse", "mouse,disable_multitouch")
    Config.set("kivy", "exit_on_escape", "0")
    Config.set("kivy", "keyboard_mode", "system")
