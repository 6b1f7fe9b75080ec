"""Network faults between the service and PostgreSQL, on loopback only.

`TcpProxy` relays a port of its own to PostgreSQL; the service under test connects through it.
`proxy.frozen()` makes it a server that accepts connections and answers nothing (a frozen
server, a stalled disk: the kernel keeps acknowledging). `dropped_packets(port)` makes the
kernel drop every packet to and from the proxy's port with nftables (a partition: nothing is
acknowledged). Both end when their block ends.
"""

import contextlib
import os
import shutil
import socket
import subprocess
import threading
import uuid

from tests.live.conftest import free_port


class TcpProxy:
    def __init__(self, upstream_host: str, upstream_port: int):
        self.upstream = (upstream_host, upstream_port)
        self.port = free_port()
        self._listener = socket.create_server(("127.0.0.1", self.port), backlog=128)
        self._running = threading.Event()  # clear: frozen (nothing accepted, nothing relayed)
        self._running.set()
        self._stopping = False
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self._stopping:
            self._running.wait()
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream, timeout=5)
                server.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets |= {client, server}
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket):
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                self._running.wait()  # frozen: hold what was read, relay nothing
                sink.sendall(data)
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    @contextlib.contextmanager
    def frozen(self):
        self._running.clear()
        try:
            yield
        finally:
            self._running.set()

    def close(self):
        self._stopping = True
        self._running.set()
        self._listener.close()
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.close()


def can_drop_packets() -> bool:
    return shutil.which("nft") is not None and os.geteuid() == 0


@contextlib.contextmanager
def dropped_packets(port: int):
    """Drop every TCP packet to or from `port` on this machine while the block runs."""
    table = f"auditlog_test_{uuid.uuid4().hex[:8]}"
    rules = (
        f"table inet {table} {{\n chain input {{\n  type filter hook input priority -10;\n"
        f"  tcp dport {port} drop\n  tcp sport {port} drop\n }}\n}}\n"
    )
    subprocess.run(["nft", "-f", "-"], input=rules, text=True, check=True, timeout=10)
    try:
        yield
    finally:
        subprocess.run(["nft", "delete", "table", "inet", table], check=True, timeout=10)
