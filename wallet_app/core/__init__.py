"""The wallet's core: everything a screen calls, and nothing that draws.

No module here imports Kivy (a unit test checks it): the same core runs under the desktop
app, the Android build and the tests. Screens call `Wallet` (wallet.py) through the
`AsyncRunner` (runner.py) and turn its errors into text with `messages.explain`."""
