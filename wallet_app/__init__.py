"""The mobile wallet: a core with no Kivy import, and Kivy screens over it."""
