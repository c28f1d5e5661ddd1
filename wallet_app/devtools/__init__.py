"""Tools that make the wallet's committed assets (icon, subset font, catalogs); run on a
developer's machine, never shipped in the APK (buildozer.spec excludes this folder)."""
