"""Delivering the Django outbox: the Sender over DjangoOutbox, in a command or a thread."""

import threading

from django.db import close_old_connections

from auditlog_client.client import Sender
from auditlog_client.django.conf import setting
from auditlog_client.django.store import DjangoOutbox
from auditlog_client.transport import Transport


def sender_for(using: str | None = None, **options) -> Sender:
    url, token = setting("URL"), setting("TOKEN")
    if not (url and token):
        raise RuntimeError('AUDITLOG_CLIENT needs "URL" and "TOKEN" to send')
    transport = Transport(url, token, connect_timeout=options.pop("connect_timeout", 5.0), read_timeout=30.0)
    return Sender(DjangoOutbox(using), transport, on_progress=close_old_connections, **options)


def start_sender(using: str | None = None):
    sender = sender_for(using)
    stop, wake = threading.Event(), threading.Event()
    thread = threading.Thread(
        target=sender.run, args=(stop, wake), name="auditlog-client-sender", daemon=True
    )
    thread.start()
    return thread, stop
