"""Scenarios of a Django producer app, run in their own process by tests/live/test_client_django.py:

    python -m tests.client.django_producer.scenario NAME

with DJANGO_SETTINGS_MODULE=tests.client.django_producer.settings and PRODUCER_DB set. Each
prints one JSON line of what it did."""

import json
import os
import signal
import sys
from decimal import Decimal

import django


def transactions() -> dict:
    from auditlog_client.django import record
    from django.db import transaction

    from tests.client.django_producer.shop.models import Tag

    class Undone(Exception):
        pass

    try:
        with transaction.atomic():
            Tag.objects.create(name="rolled back")
            record(action="tag.create", actor="ops", idempotency_key="rolled-back")
            raise Undone
    except Undone:
        pass
    with transaction.atomic():
        Tag.objects.create(name="kept")
        record(action="tag.create", actor="ops", idempotency_key="committed")
    return {"tags": list(Tag.objects.values_list("name", flat=True))}


def die_after_commit() -> None:
    from auditlog_client.django import record
    from django.db import transaction

    from tests.client.django_producer.shop.models import Tag

    with transaction.atomic():
        Tag.objects.create(name="killed")
        record(action="tag.create", actor="ops", idempotency_key="killed-after-commit")
    os.kill(os.getpid(), signal.SIGKILL)  # right after the commit: no on_commit, no flush, nothing


def models() -> dict:
    from tests.client.django_producer.shop.models import Customer, Invoice, Tag

    customer = Customer.objects.create(
        email="ada@example.com", password="pbkdf2$hash-one", pin="1234", api_token="tok-one"
    )
    invoice = Invoice.objects.create(customer=customer, total=Decimal("10.00"))
    invoice.total, invoice.status = Decimal("12.50"), "paid"
    invoice.save()
    customer.password = "pbkdf2$hash-two"
    customer.save()
    red, blue = Tag.objects.create(name="red"), Tag.objects.create(name="blue")
    invoice.tags.add(red, blue)
    invoice.tags.remove(red)
    invoice_id = invoice.pk
    invoice.delete()
    return {"customer": customer.pk, "invoice": invoice_id, "red": red.pk, "blue": blue.pk}


def request() -> dict:
    from auditlog_client.django import record
    from auditlog_client.django.middleware import AuditContextMiddleware
    from django.contrib.auth import get_user_model
    from django.http import HttpResponse
    from django.test import RequestFactory

    user = get_user_model().objects.create_user("grace", password="x" * 20)

    def view(request):
        record(action="report.download", target={"type": "report", "id": "q3"})
        return HttpResponse("ok")

    request = RequestFactory().get(
        "/report",
        REMOTE_ADDR="10.0.0.2",
        HTTP_X_FORWARDED_FOR="198.51.100.7, 203.0.113.50",
        HTTP_USER_AGENT="Mozilla/5.0 (test)",
        HTTP_X_REQUEST_ID="req-123",
    )
    request.user = user
    AuditContextMiddleware(view)(request)
    return {"user": user.pk}


def main() -> None:
    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    name = sys.argv[1]
    result = {
        "transactions": transactions,
        "die-after-commit": die_after_commit,
        "models": models,
        "request": request,
    }[name]()
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
