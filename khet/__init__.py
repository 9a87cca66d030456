"""Khet: drone field monitoring for smallholder farms.

`khet.errors` and `khet.settings` are leaves every part may import; `khet.cli` imports the parts.
"""

__version__ = "0.1.0"
