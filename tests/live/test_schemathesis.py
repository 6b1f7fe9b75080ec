"""Schemathesis, every check and every phase (examples, coverage, fuzzing, stateful), positive
and negative data, against a live gunicorn on this suite's database, driven by the service's own
/api/v1/openapi.json. Configuration and hooks: tests/schemathesis/.

Bounded: AUDITLOG_FUZZ_EXAMPLES cases per operation and phase (default 500), a new seed each
run unless AUDITLOG_FUZZ_SEED is set (the seed is in the log to replay a failure).
"""

import io
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import connection

from auditlog.keys.services import api_key_create
from auditlog.models import ActionLog
from auditlog.trail.note import Signer
from auditlog.trail.tree import tree_append
from tests.conftest import as_owner
from tests.live.conftest import LOG_DIR, ROOT

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

CONFIG = ROOT / "tests" / "schemathesis" / "schemathesis.toml"
TIME_LIMIT = 600  # seconds: a hung run fails instead of holding CI


def test_schemathesis_finds_nothing(gunicorn_factory, settings):
    # A sealed trail, so that the checkpoint and proof operations have something to answer with.
    signer = Signer.generate("fuzz.example/log")
    settings.AUDITLOG_TRAIL_KEY = signer.text()
    call_command("auditlog_demo", "--count", "300", "--seed", "1", stdout=io.StringIO())
    with as_owner():
        tree_append(
            upto_id=ActionLog.objects.order_by("-id").values_list("id", flat=True).first(), block_size=300
        )
    sealed = ActionLog.objects.order_by("id").values_list("uuid", flat=True)[150]
    # A receipt key, so that receipt-keys answers and producers' `Prefer: receipt` gets receipts.
    server = gunicorn_factory(
        AUDITLOG_TRAIL_VERIFIER_KEYS=signer.verifier().text(),
        AUDITLOG_RECEIPT_KEY=Signer.generate("receipts.fuzz.example").text(),
    )
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
    env = {
        **os.environ,
        # read_all: the sealed event the proof operation asks about is the demo source's
        "AUDITLOG_FUZZ_TOKEN": api_key_create(name="fuzzer", scopes={"write", "read_all"})[1],
        "AUDITLOG_FUZZ_SEALED_EVENT": str(sealed),
        "PYTHONPATH": str(ROOT),
    }

    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=TIME_LIMIT)

    (LOG_DIR / f"schemathesis-{connection.vendor}.log").write_text(result.stdout + result.stderr)
    assert result.returncode == 0, f"seed {seed}:\n{result.stdout[-20000:]}\n{result.stderr[-5000:]}"
    assert "No issues found" in result.stdout
    assert "Traceback" not in server.log()  # no 500 the checks could have missed
