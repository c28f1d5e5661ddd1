"""The wallet's Kivy screens: each a class in `screens/<name>.py` with its layout in
`screens/<name>.kv`. Screens call the core (`wallet_app.core`) only, through the app's
`AsyncRunner`; they never reach into each other. `setup.configure` must run before the
first `import kivy` (the `yuanrail wallet` command and the UI tests call it)."""
