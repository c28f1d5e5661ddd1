"""The QR scanner, picked per platform, with every path ending in one `on_qr(text)` event.

- the camera, through Kivy's `Camera` (where a camera provider exists): a frame is read
  every `FRAME_INTERVAL_S` and decoded off the UI thread with zxing-cpp;
- on a desktop, an image file (typed path, or chosen in a file browser);
- pasted text (a payload copied from elsewhere).

Whatever the path, the screen gets `on_qr(text)` with the decoded text, or `on_error(exc)`
when nothing could be read; it never has to know where the code came from."""

from __future__ import annotations

import os
from pathlib import Path

from kivy.app import App
from kivy.clock import Clock
from kivy.lang import Builder
from kivy.properties import BooleanProperty, StringProperty
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.popup import Popup

from wallet_app.core import qrimage
from wallet_app.core.errors import WalletError
from wallet_app.core.i18n import N_

Builder.load_file(str(Path(__file__).with_suffix(".kv")))

FRAME_INTERVAL_S = 0.4


def camera_available() -> bool:
    try:
        from kivy.core.camera import Camera as CoreCamera
    except Exception:  # noqa: BLE001 - no provider is "no camera"
        return False
    return CoreCamera is not None


class QrScanner(BoxLayout):
    __events__ = ("on_qr", "on_error")

    camera_on = BooleanProperty(False)
    start_folder = StringProperty("")

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._camera = None
        self._frame_event = None
        self._decoding = False

    def on_qr(self, text: str) -> None:
        pass

    def on_error(self, exc: BaseException) -> None:
        pass

    @property
    def runner(self):
        return App.get_running_app().runner

    # --- the camera ----------------------------------------------------------------------

    def toggle_camera(self) -> None:
        if self.camera_on:
            self.stop_camera()
            return
        if not camera_available():
            self.dispatch("on_error", WalletError("camera_unavailable"))
            return
        try:
            from kivy.uix.camera import Camera

            self._camera = Camera(play=True, resolution=(640, 480))
        except Exception:  # noqa: BLE001 - any provider failure means no camera
            self._camera = None
            self.dispatch("on_error", WalletError("camera_unavailable"))
            return
        self.ids.camera_box.clear_widgets()
        self.ids.camera_box.add_widget(self._camera)
        self.camera_on = True
        self._frame_event = Clock.schedule_interval(self._grab_frame, FRAME_INTERVAL_S)

    def stop_camera(self) -> None:
        if self._frame_event is not None:
            self._frame_event.cancel()
            self._frame_event = None
        if self._camera is not None:
            self._camera.play = False
            self.ids.camera_box.clear_widgets()
            self._camera = None
        self.camera_on = False

    def _grab_frame(self, _dt: float) -> None:
        texture = self._camera.texture if self._camera is not None else None
        if texture is None or self._decoding:
            return
        pixels, (width, height) = texture.pixels, texture.size
        self._decoding = True

        async def decode() -> list[str]:
            return qrimage.decode_rgba(pixels, width, height, flip=True)

        def done(texts: list[str]) -> None:
            self._decoding = False
            if texts and self.camera_on:
                self.stop_camera()
                self.dispatch("on_qr", texts[0])

        def failed(_exc: BaseException) -> None:
            self._decoding = False  # a bad frame: try the next one

        self.runner.run(decode(), done, failed)

    # --- image files and pasted text -----------------------------------------------------

    def open_path(self, path: str | None = None) -> None:
        """Decode the QR code in an image file (the path typed, or the one given)."""
        path = (path if path is not None else self.ids.path.text).strip()
        if not path:
            self.dispatch("on_error",
                          WalletError("unreadable_code", N_("type an image file's path")))
            return

        async def decode() -> str:
            return qrimage.single_code(qrimage.decode_image_file(os.path.expanduser(path)))

        self.runner.run(decode(), lambda text: self.dispatch("on_qr", text),
                        lambda exc: self.dispatch("on_error", exc))

    def choose_file(self) -> None:
        chooser = FileChooserPopup(self.start_folder or os.getcwd(), self._chosen)
        chooser.open()

    def _chosen(self, path: str) -> None:
        self.ids.path.text = path
        self.open_path(path)

    def use_pasted(self) -> None:
        text = self.ids.paste.text.strip()
        if not text:
            self.dispatch("on_error", WalletError("unreadable_code", N_("paste a code first")))
            return
        self.dispatch("on_qr", text)


class FileChooserPopup(Popup):
    def __init__(self, folder: str, on_chosen, **kwargs) -> None:
        self._on_chosen = on_chosen
        super().__init__(**kwargs)
        self.ids.chooser.path = folder if os.path.isdir(folder) else os.getcwd()

    def choose(self, selection: list[str]) -> None:
        if selection:
            self.dismiss()
            self._on_chosen(selection[0])
