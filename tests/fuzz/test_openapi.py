"""Schemathesis against the daemon's own OpenAPI document (the native API and TES):
no 5xx, nothing undocumented.

A short run here; the long one is in docs/reliability.md.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import acjob
from tests.conftest import Daemon, free_port, tool_env

TOKEN = "fuzz-token"
CHECKS = ("not_a_server_error,status_code_conformance,content_type_conformance,"
          "response_schema_conformance,response_headers_conformance")


def test_fuzzing_the_api(short_tmp: Path) -> None:
    tool = Path(sys.executable).parent / "schemathesis"
    if not tool.exists():
        pytest.skip("schemathesis is not installed (pip install -e '.[test]')")
    port = free_port()
    config = short_tmp / "fuzz.toml"
    # Held (no generated command ever runs) and without a webhook secret (no callback
    # to a generated URL is ever attempted): the fuzzer touches nothing but the API.
    config.write_text(f'[server]\nstate_dir = "{short_tmp}/state"\ntoken = "{TOKEN}"\n'
                      "hold = true\n")
    daemon = Daemon(state_dir=short_tmp / "state", url=f"http://127.0.0.1:{port}",
                    env=tool_env(short_tmp), config=config)
    daemon.start()
    try:
        examples = os.environ.get("ACJOB_FUZZ_EXAMPLES", "10")
        result = subprocess.run(
            [str(tool), "run", f"{daemon.url}/openapi.json", "-H",
             f"Authorization: Bearer {TOKEN}", "--max-examples", examples, "--checks", CHECKS,
             "--exclude-path", "/v1/shutdown", "--seed", "1"],
            # A long run (ACJOB_FUZZ_EXAMPLES=120) takes many minutes.
            capture_output=True, text=True, timeout=max(900, 30 * int(examples)),
            cwd=short_tmp)
        # The summary (operations, generated and passed counts) for the record.
        print(result.stdout[-3000:])
        assert result.returncode == 0, result.stdout[-6000:]
        assert " passed" in result.stdout
        with acjob.Client(daemon.url, TOKEN) as client:
            jobs, _ = client.list(limit=1000)
        assert jobs and all(job.attempt == 0 for job in jobs)  # held: nothing ran
    finally:
        daemon.stop()
    log = daemon.log.read_text()
    assert "internal error" not in log, log[-3000:]
