"""The command-line shell: one module per command over the library, `app` ties them together.

Imports run one way: `streamcast.cli` imports the library, never the reverse.
"""

from streamcast.cli.app import main

__all__ = ["main"]
