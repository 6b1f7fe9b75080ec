"""Realistic producers for `make loadtest` (loadtest/run_loadtest.py runs it headless).

Mostly single events, sometimes batches, some reads, some idempotent replays. Every event
carries an idempotency key; the keys acknowledged (201/200) are written to AUDITLOG_ACKED_FILE
at the end, so the run can check that the database holds exactly those events.
"""

import json
import os
import random
import uuid

from locust import HttpUser, between, events, task

TOKEN = os.environ["AUDITLOG_TOKEN"]
ACKED_FILE = os.environ["AUDITLOG_ACKED_FILE"]
ACTIONS = ["user.login", "document.view", "invoice.create", "invoice.delete", "payment.refund", "role.grant"]
acked: set[str] = set()  # locust users are greenlets in one thread: no lock needed


def event() -> dict:
    action = random.choice(ACTIONS)
    return {
        "action": action,
        "actor": {"id": str(random.randint(1, 3000)), "type": "user"},
        "target": {"type": action.split(".")[0], "id": str(random.randint(1, 50_000))},
        "outcome": "failure" if random.random() < 0.03 else "success",
        "context": {"ip": f"203.0.113.{random.randint(1, 254)}", "user_agent": "locust-producer/1.0"},
        "metadata": {"request_id": uuid.uuid4().hex},
        "idempotency_key": str(uuid.uuid4()),
    }


class Producer(HttpUser):
    wait_time = between(0.0, 0.02)

    def on_start(self):
        self.client.headers.update({"Authorization": f"Bearer {TOKEN}"})
        self.sent: list[dict] = []

    @task(20)
    def single(self):
        body = event()
        with self.client.post(
            "/api/v1/events", json=body, name="POST /events", catch_response=True
        ) as response:
            if response.status_code == 201:
                acked.add(body["idempotency_key"])
                self.sent.append(body)
            else:
                response.failure(f"{response.status_code}: {response.text[:200]}")

    @task(2)
    def batch(self):
        batch = [event() for _ in range(50)]
        with self.client.post(
            "/api/v1/events/batch", json={"events": batch}, name="POST /events/batch", catch_response=True
        ) as response:
            if response.status_code != 200:
                response.failure(f"{response.status_code}: {response.text[:200]}")
                return
            results = response.json()["results"]
            bad = [item for item in results if item["status"] not in (200, 201)]
            acked.update(
                batch[item["index"]]["idempotency_key"] for item in results if item["status"] in (200, 201)
            )
            if bad:
                response.failure(f"{len(bad)} items failed: {bad[0]}")

    @task(3)
    def read(self):
        with self.client.get("/api/v1/events?limit=20", name="GET /events", catch_response=True) as response:
            if response.status_code != 200:
                response.failure(f"{response.status_code}")

    @task(2)
    def replay(self):
        if not self.sent:
            return
        body = random.choice(self.sent)
        with self.client.post(
            "/api/v1/events", json=body, name="POST /events (replay)", catch_response=True
        ) as response:
            if response.status_code != 200:
                response.failure(f"replay answered {response.status_code}")


@events.quitting.add_listener
def write_acknowledged(environment, **kwargs):
    with open(ACKED_FILE, "w") as file:
        json.dump(sorted(acked), file)
