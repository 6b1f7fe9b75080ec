"""HTTP to the service with the standard library: one kept-alive connection per sender, every
wait bounded (connect, then each read)."""

import http.client
import json
import ssl
from urllib.parse import urlsplit


class TransportError(Exception):
    """The batch was not answered (network, timeout, 5xx, or a 4xx of the whole request such as
    a revoked key): every event in it is kept and retried. retry_after: the service's
    Retry-After, in seconds."""

    def __init__(self, message: str, status: int | None = None, retry_after: float | None = None):
        super().__init__(message)
        self.status, self.retry_after = status, retry_after


class Transport:
    def __init__(self, url: str, token: str, *, connect_timeout: float, read_timeout: float):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"url must be http(s)://host[:port]: {url!r}")
        self.https = parts.scheme == "https"
        self.host, self.port = parts.hostname, parts.port or (443 if self.https else 80)
        self.path = parts.path.rstrip("/") + "/api/v1/events/batch"
        self.token = token
        self.connect_timeout, self.read_timeout = connect_timeout, read_timeout
        self._conn: http.client.HTTPConnection | None = None

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            if self.https:
                conn = http.client.HTTPSConnection(
                    self.host, self.port, timeout=self.connect_timeout, context=ssl.create_default_context()
                )
            else:
                conn = http.client.HTTPConnection(self.host, self.port, timeout=self.connect_timeout)
            conn.connect()
            conn.sock.settimeout(self.read_timeout)
            self._conn = conn
        return self._conn

    def send_batch(self, bodies: list[str]) -> list[dict]:
        """POST the events; their results in order. Raises TransportError."""
        payload = ('{"events":[' + ",".join(bodies) + "]}").encode("utf-8")
        headers = {
            "Authorization": f"Bearer {self.token}",
            "Content-Type": "application/json",
            "User-Agent": "auditlog-client/0.1",
        }
        try:
            conn = self._connection()
            conn.request("POST", self.path, payload, headers)
            response = conn.getresponse()
            status, raw = response.status, response.read()
            retry_after = response.getheader("Retry-After")
        except (TimeoutError, OSError, http.client.HTTPException) as exc:
            self.close()
            raise TransportError(f"{type(exc).__name__}: {exc}") from None
        if status != 200:
            self.close() if status >= 500 else None
            raise TransportError(
                f"the service answered {status}: {raw[:300]!r}", status, _seconds(retry_after)
            )
        try:
            results = json.loads(raw)["results"]
        except (ValueError, KeyError, TypeError):
            self.close()
            raise TransportError(f"an answer that is not the batch's results: {raw[:200]!r}") from None
        if len(results) != len(bodies):
            raise TransportError(f"{len(results)} results for {len(bodies)} events")
        return sorted(results, key=lambda result: result.get("index", 0))

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _seconds(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
