"""Schemathesis, every check and every phase (examples, coverage, fuzzing, stateful), positive
and negative data, against a live gunicorn on this suite's database, driven by the service's own
/api/v1/openapi.json. Configuration and hooks: tests/schemathesis/.

Bounded: AUDITLOG_FUZZ_EXAMPLES cases per operation and phase (default 500), a new seed each
run unless AUDITLOG_FUZZ_SEED is set (the seed is in the log to replay a failure).
"""

import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection

from tests.live.conftest import LOG_DIR, ROOT

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

CONFIG = ROOT / "tests" / "schemathesis" / "schemathesis.toml"
TIME_LIMIT = 600  # seconds: a hung run fails instead of holding CI


def test_schemathesis_finds_nothing(gunicorn_factory, writer_key):
    server = gunicorn_factory()
    seed = os.environ.get("AUDITLOG_FUZZ_SEED") or str(random.randrange(2**31))
    examples = os.environ.get("AUDITLOG_FUZZ_EXAMPLES", "500")
    reports = LOG_DIR / f"schemathesis-{connection.vendor}"
    command = [
        str(Path(sys.executable).with_name("schemathesis")),
        "--no-color",
        "--config-file",
        str(CONFIG),
        "run",
        f"{server.url}/api/v1/openapi.json",
        "--max-examples",
        examples,
        "--seed",
        seed,
        "--report",
        "junit",
        "--report-dir",
        str(reports),
    ]
    env = {**os.environ, "AUDITLOG_FUZZ_TOKEN": writer_key[1], "PYTHONPATH": str(ROOT)}

    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=TIME_LIMIT)

    (LOG_DIR / f"schemathesis-{connection.vendor}.log").write_text(result.stdout + result.stderr)
    assert result.returncode == 0, f"seed {seed}:\n{result.stdout[-20000:]}\n{result.stderr[-5000:]}"
    assert "No issues found" in result.stdout
    assert "Traceback" not in server.log()  # no 500 the checks could have missed
