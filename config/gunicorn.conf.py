"""gunicorn settings: gthread workers, sized from the environment (docs/configuration.md)."""

import os

# A thread holds one database connection (persistent mode): keep workers x threads within the
# database's connection budget; `manage.py auditlog_dbcheck` checks it against max_connections.
workers = int(os.environ.get("WEB_CONCURRENCY") or os.cpu_count() or 1)
threads = int(os.environ.get("GUNICORN_THREADS") or 4)
worker_class = "gthread"
# Heartbeat files on tmpfs, so a slow disk cannot get a worker killed.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None
timeout = int(os.environ.get("GUNICORN_TIMEOUT") or 30)
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT") or 30)
keepalive = 5
# A request line up to 8190 bytes (gunicorn's largest; its default is 4094) reaches the app,
# which answers in JSON. gunicorn answers a longer one itself, with an HTML 414 that no code
# here can reach; deploy/nginx.conf stops such lines before them (8000 bytes), in JSON.
limit_request_line = 8190
accesslog = os.environ.get("GUNICORN_ACCESSLOG") or None
errorlog = "-"
# gunicorn >= 24 opens a control socket at one fixed path per user: several servers on one
# machine (tests, benchmarks) would fight over it, and nothing here uses gunicornc.
control_socket_disable = True

# Metrics across workers (prometheus_client's multiprocess mode): each worker writes its values
# to files in PROMETHEUS_MULTIPROC_DIR and GET /metrics adds them up. The directory must be
# empty when the server starts (old files would count again): a private one on tmpfs is made
# for this server unless one is given, and emptied if given; a dead worker's live values are
# dropped. In hooks, not at import: `manage.py check` reads this file for its numbers
# (auditlog.checks.capacity) and must not get a directory, or an environment, from it.
_made_metrics_dir = []
METRICS_DIR_PREFIX = "auditlog-metrics-"


def on_starting(server):
    given = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if given:
        for name in os.listdir(given):
            if name.endswith(".db"):
                os.unlink(os.path.join(given, name))
        return
    import tempfile

    # tmpfs, as the heartbeat files: memory-mapped values written on every request, which a disk
    # would write back for nothing. Named by this master's pid, for the sweep.
    parent = worker_tmp_dir or tempfile.gettempdir()
    _remove_dead_servers_metrics_dirs(parent)
    made = tempfile.mkdtemp(prefix=f"{METRICS_DIR_PREFIX}{os.getpid()}-", dir=parent)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = made  # the workers, forked after this, inherit it
    _made_metrics_dir.append(made)


def _remove_dead_servers_metrics_dirs(parent: str) -> None:
    """A server killed with SIGKILL runs no on_exit: its directory stays. Remove those whose
    master is gone (a live one, or another user's, answers os.kill(pid, 0) or refuses it)."""
    import shutil

    for name in os.listdir(parent):
        pid = name[len(METRICS_DIR_PREFIX) :].partition("-")[0]
        if not (name.startswith(METRICS_DIR_PREFIX) and pid.isdigit()):
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(os.path.join(parent, name), ignore_errors=True)
        except PermissionError:
            pass


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    import shutil

    for made in _made_metrics_dir:
        shutil.rmtree(made, ignore_errors=True)
