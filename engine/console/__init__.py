"""The web console: what eventmap did with each event, dead letters to retry, and a mapping tester.

Served by ``eventmap serve`` under ``/console`` and by ``eventmap console`` on its own. This module
holds only the two constants the CLI needs, so ``eventmap`` commands do not load the console
(``engine.console.app``) to print their help.
"""
PREFIX = "/console"
DEFAULT_PORT = 8089   # eventmap console alone: beside the server's 8088, so both can run on one machine
