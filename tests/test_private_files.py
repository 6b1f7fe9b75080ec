"""Files the service creates are readable by their owner only, even under a permissive umask."""

import io
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def permissive_umask():
    """The usual umask: files come out 0644 unless the service asks for less."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def modes(directory: Path) -> dict[str, int]:
    return {path.name: path.stat().st_mode & 0o777 for path in directory.iterdir()}


def test_make_env_writes_an_owner_only_file(tmp_path):
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")

    result = subprocess.run(
        ["make", ".env", f"PYTHON={sys.executable}"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )

    assert result.returncode == 0, result.stderr
    assert modes(tmp_path) == {"Makefile": 0o644, ".env": 0o600}
    assert (tmp_path / ".env").read_text().startswith("DJANGO_SECRET_KEY=")


SQLITE_SERVICE = """
import os, sys
import django
django.setup()
from django.core.management import CommandError, call_command
from django.db import connection
from auditlog.db.writer_queue import sqlite_writer_queue
from auditlog.keys.services import api_key_create
call_command("migrate", "--noinput", verbosity=0)
with sqlite_writer_queue():
    api_key_create(name="first", scopes={"write"})
directory = os.path.dirname(connection.settings_dict["NAME"])
# While the connection is open, so that the -wal and -shm files exist.
for name in sorted(os.listdir(directory)):
    print(name, oct(os.stat(os.path.join(directory, name)).st_mode & 0o777))
"""


def test_sqlite_database_its_wal_shm_and_lock_file_are_owner_only(tmp_path):
    """What `make run` creates on first use: a migrated database, written to under the queue."""
    env = {
        "PATH": os.environ["PATH"],
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DJANGO_ENV_FILE": "/nonexistent",
        "DJANGO_SECRET_KEY": "k" * 60,
        "DATABASE_URL": f"sqlite:///{tmp_path}/audit.sqlite3",
    }
    result = subprocess.run(
        [sys.executable, "-c", SQLITE_SERVICE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )

    assert result.returncode == 0, result.stderr
    assert dict(line.split() for line in result.stdout.splitlines()) == {
        "audit.sqlite3": "0o600",
        "audit.sqlite3-shm": "0o600",
        "audit.sqlite3-wal": "0o600",
        "audit.sqlite3.writer-lock": "0o600",
    }


def export(*args) -> None:
    call_command("auditlog_export", *args, stdout=io.StringIO(), stderr=io.StringIO())


@pytest.mark.django_db
@pytest.mark.parametrize("export_format", ["csv", "jsonl"])
def test_an_export_file_is_created_owner_only(tmp_path, export_format):
    export("--format", export_format, "--output", str(tmp_path / "events"))

    assert modes(tmp_path) == {"events": 0o600}


@pytest.mark.django_db
def test_an_existing_export_file_is_tightened_then_overwritten(tmp_path):
    path = tmp_path / "events.csv"
    path.write_text("an older export, longer than the new one\n" * 100)
    path.chmod(0o644)

    export("--output", str(path))

    assert modes(tmp_path) == {"events.csv": 0o600}
    assert path.read_text().startswith('"id","occurred_at",')
    assert "older export" not in path.read_text()


@pytest.fixture
def someone_elses_file():
    """A file anyone may write but only its owner (root) may chmod, in a directory anyone can
    reach."""
    directory = Path(tempfile.mkdtemp())
    directory.chmod(0o755)
    path = directory / "events.csv"
    path.write_text("someone else's file\n")
    path.chmod(0o666)
    yield path
    shutil.rmtree(directory)


@pytest.mark.django_db
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root, to act as another user")
def test_an_export_file_that_cannot_be_tightened_is_refused_and_left_intact(someone_elses_file):
    os.seteuid(65534)  # nobody; the test database's connection is open already
    try:
        with pytest.raises(CommandError, match="Cannot write .*events.csv: Operation not permitted"):
            export("--output", str(someone_elses_file))
    finally:
        os.seteuid(0)

    assert someone_elses_file.read_text() == "someone else's file\n"
    assert someone_elses_file.stat().st_mode & 0o777 == 0o666
