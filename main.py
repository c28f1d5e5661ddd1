"""Entry point for buildozer (Android): the Kivy wallet."""

from wallet_app.__main__ import main

main()
