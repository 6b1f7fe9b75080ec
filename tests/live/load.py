"""Concurrent producers for live tests: bounded, loopback only, every event idempotency-keyed.

Each client thread keeps its own keep-alive connection and records every request it makes, so
a test can compare, exactly, what was sent, what was acknowledged and what is stored.
"""

import http.client
import json
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from tests.conftest import BATCH_URL, EVENTS_URL, make_event

BATCH_SIZE = 25


@dataclass
class Result:
    kind: str  # single, batch, read, replay
    status: int | None  # None: the connection failed
    started: float
    finished: float
    json_body: bool
    body: object = None  # the parsed JSON answer, if it was JSON
    acked: dict[str, str] = field(default_factory=dict)  # idempotency key -> event id
    error: str = ""


@dataclass
class Plan:
    """What each client does: `ops` requests, of which the mix is chosen by op number."""

    clients: int
    ops: int
    retry_until: float | None = None  # monotonic deadline: retry 503s and connection errors
    stop: threading.Event | None = None  # stop early (graceful-shutdown tests)
    gate: threading.Event | None = None  # clients wait while it is clear (pause the load)
    in_flight: int = 0
    sent_keys: set = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def pause_and_drain(self, timeout=30.0) -> None:
        """Close the gate and wait until no request is in flight."""
        self.gate.clear()
        deadline = time.monotonic() + timeout
        while self.in_flight and time.monotonic() < deadline:
            time.sleep(0.005)
        assert self.in_flight == 0, "requests still in flight"

    def kind(self, op: int) -> str:
        return {7: "batch", 8: "read", 9: "replay"}.get(op % 10, "single")


class Client:
    def __init__(self, port: int, token: str):
        self.port = port
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        self.conn = None
        self.last_headers = {}

    def send(self, method, path, body=None):
        """Return (status, parsed JSON or None); raise OSError/HTTPException on a broken connection."""
        if self.conn is None:
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            self.conn.request(
                method, path, body=None if body is None else json.dumps(body), headers=self.headers
            )
            response = self.conn.getresponse()
            raw = response.read()
            self.last_headers = dict(response.getheaders())
        except (OSError, http.client.HTTPException):
            self.close()
            raise
        if response.getheader("Connection", "").lower() == "close":
            self.close()
        try:
            return response.status, json.loads(raw)
        except ValueError:
            return response.status, None

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def _request(
    plan: Plan, client: Client, kind: str, method: str, path: str, body
) -> tuple[Result, list[Result]]:
    """Send once, or until success / the retry deadline. Return the final result and the faults."""
    faults = []
    while True:
        if plan.gate is not None:
            plan.gate.wait()
        with plan.lock:
            plan.in_flight += 1
        started = time.monotonic()
        try:
            status, parsed = client.send(method, path, body)
            result = Result(kind, status, started, time.monotonic(), parsed is not None, parsed)
        except (OSError, http.client.HTTPException) as exc:
            result = Result(kind, None, started, time.monotonic(), False, error=repr(exc))
        finally:
            with plan.lock:
                plan.in_flight -= 1
        retryable = result.status is None or result.status == 503
        if not retryable or plan.retry_until is None or time.monotonic() > plan.retry_until:
            return result, faults
        faults.append(result)
        time.sleep(0.2)


def _acked_from(result: Result, keys: list[str]) -> dict[str, str]:
    body = result.body
    if result.kind in ("single", "replay") and result.status in (200, 201):
        return {keys[0]: body["id"]}
    if result.kind == "batch" and result.status == 200:
        return {keys[item["index"]]: item["id"] for item in body["results"] if item["status"] in (200, 201)}
    return {}


def _client_run(plan: Plan, port: int, token: str, number: int) -> list[Result]:
    client = Client(port, token)
    results, last_single = [], None
    try:
        for op in range(plan.ops):
            if plan.stop is not None and plan.stop.is_set():
                break
            kind = plan.kind(op)
            if kind == "replay" and last_single is None:
                kind = "single"
            if kind == "read":
                result, faults = _request(plan, client, kind, "GET", f"{EVENTS_URL}?limit=20", None)
                results += [*faults, result]
                continue
            if kind == "replay":
                keys, body, path = last_single
            elif kind == "batch":
                keys = [f"c{number}-o{op}-{i}" for i in range(BATCH_SIZE)]
                body = {"events": [_event(key, number) for key in keys]}
                path = BATCH_URL
            else:
                keys = [f"c{number}-o{op}"]
                body, path = _event(keys[0], number), EVENTS_URL
            if kind != "replay":
                with plan.lock:
                    plan.sent_keys.update(keys)
            result, faults = _request(plan, client, kind, "POST", path, body)
            result.acked = _acked_from(result, keys)
            if kind == "single" and result.acked:
                last_single = (keys, body, path)
            results += [*faults, result]
    finally:
        client.close()
    return results


def _event(key: str, client_number: int) -> dict:
    return make_event(
        idempotency_key=key,
        actor={"id": f"user-{client_number % 37}", "type": "user"},
        metadata={"key": key, "padding": "p" * 200},
    )


def run(plan: Plan, port: int, token: str) -> list[Result]:
    with ThreadPoolExecutor(max_workers=plan.clients) as pool:
        futures = [pool.submit(_client_run, plan, port, token, n) for n in range(plan.clients)]
        return [result for future in futures for result in future.result()]


def acked(results: list[Result]) -> dict[str, str]:
    merged = {}
    for result in results:
        merged.update(result.acked)
    return merged


def status_counts(results: list[Result]) -> dict:
    return dict(Counter(str(result.status) for result in results))
