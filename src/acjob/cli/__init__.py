"""The command-line tools: ``acjob``, ``acpoll`` and ``ac``. Thin layers over the client."""

import sys

# httpx imports its own command-line client (httpx._main: click, rich and pygments, some
# 40 ms) whenever those are installed, and rich is (the progress bar): the tools never
# run httpx's command line, so it is marked missing before httpx is first imported, and
# rich is loaded only when a bar is drawn.
if "httpx" not in sys.modules:
    sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
