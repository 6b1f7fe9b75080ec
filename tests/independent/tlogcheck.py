"""Builds and runs tlogcheck (tlogcheck/main.go), an independent checker of what our
transparency log publishes: Go's golang.org/x/mod/sumdb/note and sumdb/tlog from Debian
(golang-go, golang-golang-x-mod-dev), built offline in GOPATH mode. See main.go for the
formats it checks and its subcommands.

    binary = tlogcheck.require()   # in a test: skips (fails under CI=true) without go or x/mod
    tlogcheck.run("inclusion", "-vkey", vkey, "-checkpoint", path, "-proof", path)
"""

import atexit
import functools
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parent / "tlogcheck"
GOPATH = Path("/usr/share/gocode")
X_MOD_SUMDB = GOPATH / "src/golang.org/x/mod/sumdb"
INSTALL_HINT = "Debian: apt-get install golang-go golang-golang-x-mod-dev"


def missing() -> str | None:
    """Why tlogcheck cannot be built here, or None."""
    if shutil.which("go") is None:
        return f"needs the go command ({INSTALL_HINT})"
    if not all((X_MOD_SUMDB / pkg).is_dir() for pkg in ("note", "tlog")):
        return f"needs golang.org/x/mod/sumdb/note and tlog in {X_MOD_SUMDB} ({INSTALL_HINT})"
    return None


@functools.cache
def build() -> Path | None:
    """Builds tlogcheck once per process into a temporary directory; None without go or x/mod.

    GOPATH mode with Debian's sources and no network: GO111MODULE=off resolves imports from
    GOPATH/src; GOENV=off ignores a user's go env file (an empty GOFLAGS variable would not
    override it); GOCACHE is private to this build.
    """
    if missing():
        return None
    out = Path(tempfile.mkdtemp(prefix="tlogcheck-"))
    atexit.register(shutil.rmtree, out, ignore_errors=True)
    env = os.environ | {
        "GO111MODULE": "off",
        "GOPATH": str(GOPATH),
        "GOENV": "off",
        "GOFLAGS": "",
        "GOCACHE": str(out / "gocache"),
        "GOPROXY": "off",
        "CGO_ENABLED": "0",
    }
    binary = out / "tlogcheck"
    result = subprocess.run(
        ["go", "build", "-o", str(binary), "."],
        cwd=SOURCE,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if result.returncode != 0:
        raise RuntimeError(f"go build of {SOURCE} failed:\n{result.stdout}{result.stderr}")
    return binary


def require() -> Path:
    """The built binary; in a test, skips without go or x/mod, or fails when CI=true."""
    binary = build()
    if binary is None:
        message = f"tlogcheck {missing()}"
        if os.environ.get("CI") == "true":
            pytest.fail(message + "; required when CI=true")
        pytest.skip(message + "; with CI=true this fails")
    return binary


def run(*args: str | os.PathLike) -> subprocess.CompletedProcess:
    """Runs tlogcheck with args (text output captured, no check): exit 0 with the result on
    stdout, 1 with the failed check on stderr, 2 for a usage error."""
    binary = build()
    if binary is None:
        raise RuntimeError(f"tlogcheck {missing()}")
    return subprocess.run([binary, *map(str, args)], capture_output=True, text=True, timeout=120)
