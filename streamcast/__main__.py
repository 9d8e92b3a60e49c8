"""Makes `python -m streamcast` work like the `streamcast` command."""

from streamcast.cli import main

main()
