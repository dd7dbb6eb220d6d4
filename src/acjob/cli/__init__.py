"""The command-line tools: ``acjob``, ``acpoll`` and ``ac``. Thin layers over the client."""
