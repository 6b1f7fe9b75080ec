"""register(Model): create, update and delete of its rows as events, with
{"changes": {field: [before, after]}} (the convention the service's admin shows as a table),
many-to-many changes as lists of related keys, and secrets never sent.

A secret is a field named in `secrets`, in AUDITLOG_CLIENT["SECRET_FIELDS"], or whose name says
so (password, token, secret, api_key, private_key); its change is recorded with "[secret]" for
both values, so the event says it changed and never what it was or became.
"""

import json

from django.core.serializers.json import DjangoJSONEncoder
from django.db.models.signals import m2m_changed, post_delete, post_save, pre_save

from auditlog_client.django.conf import setting

SECRET = "[secret]"
_SECRET_WORDS = ("password", "token", "secret", "api_key", "private_key")
_registered: dict = {}


def register(model, *, include=None, exclude=(), secrets=()):
    opts = model._meta
    fields = [field for field in opts.concrete_fields if not field.primary_key]
    many = list(opts.many_to_many)
    if include is not None:
        fields = [field for field in fields if field.name in include]
        many = [field for field in many if field.name in include]
    fields = [field for field in fields if field.name not in exclude]
    many = [field for field in many if field.name not in exclude]
    hidden = set(secrets) | set(setting("SECRET_FIELDS"))
    spec = {
        "fields": fields,
        "secret": {
            field.name
            for field in fields
            if field.name in hidden or any(w in field.name for w in _SECRET_WORDS)
        },
        "prefix": f"{opts.app_label}.{opts.model_name}",
    }
    _registered[model] = spec
    uid = f"auditlog_client.{spec['prefix']}"
    pre_save.connect(_before_save, sender=model, dispatch_uid=uid + ".pre_save", weak=False)
    post_save.connect(_saved, sender=model, dispatch_uid=uid + ".post_save", weak=False)
    post_delete.connect(_deleted, sender=model, dispatch_uid=uid + ".post_delete", weak=False)
    for field in many:
        m2m_changed.connect(
            _members(field.name),
            sender=field.remote_field.through,
            dispatch_uid=f"{uid}.{field.name}",
            weak=False,
        )
    return model


def _values(instance, spec) -> dict:
    values = {}
    for field in spec["fields"]:
        value = getattr(instance, field.attname)
        values[field.name] = SECRET if field.name in spec["secret"] else _jsonable(value)
    return values


def _jsonable(value):
    return json.loads(json.dumps(value, cls=DjangoJSONEncoder))


def _target(instance, spec) -> dict:
    return {"type": spec["prefix"], "id": str(instance.pk), "name": str(instance)[:255]}


def _record(action: str, instance, spec, changes: dict, using: str) -> None:
    from auditlog_client.django import record
    from auditlog_client.django.middleware import current_request

    # In a request, the request's user (record()'s default); elsewhere (a command, a task),
    # AUDITLOG_CLIENT["DEFAULT_ACTOR"].
    actor = None if current_request() is not None else setting("DEFAULT_ACTOR")
    record(
        action=f"{spec['prefix']}.{action}",
        actor=actor,
        target=_target(instance, spec),
        metadata={"changes": changes},
        using=using,
    )


def _before_save(sender, instance, raw=False, using=None, **kwargs):
    spec = _registered[sender]
    old = None
    if instance.pk is not None and not raw:
        old = sender._default_manager.using(using).filter(pk=instance.pk).first()
    instance._auditlog_before = _values(old, spec) if old is not None else None
    # The secrets' real values, in memory only: to tell whether they changed, never sent.
    instance._auditlog_secrets = _secrets(old, spec) if old is not None else {}


def _saved(sender, instance, created, raw=False, using=None, **kwargs):
    if raw:
        return
    spec = _registered[sender]
    after = _values(instance, spec)
    before = getattr(instance, "_auditlog_before", None)
    if created or before is None:
        changes = {name: [None, value] for name, value in after.items() if value not in (None, "")}
        _record("create", instance, spec, changes, using)
        return
    secrets_now = _secrets(instance, spec)
    changes = {
        name: [before[name], value]
        for name, value in after.items()
        if before.get(name) != value
        or (name in spec["secret"] and instance._auditlog_secrets.get(name) != secrets_now[name])
    }
    if changes:
        _record("update", instance, spec, changes, using)


def _secrets(instance, spec) -> dict:
    return {
        field.name: getattr(instance, field.attname)
        for field in spec["fields"]
        if field.name in spec["secret"]
    }


def _deleted(sender, instance, using=None, **kwargs):
    spec = _registered[sender]
    changes = {
        name: [value, None] for name, value in _values(instance, spec).items() if value not in (None, "")
    }
    _record("delete", instance, spec, changes, using)


def _members(name: str):
    """m2m_changed: the related keys before and after, as one change of the field."""

    def receiver(sender, instance, action, reverse, model, pk_set, using=None, **kwargs):
        if reverse or type(instance) not in _registered:
            return
        spec = _registered[type(instance)]
        related = getattr(instance, name)
        if action in ("pre_add", "pre_remove", "pre_clear"):
            instance.__dict__.setdefault("_auditlog_members", {})[name] = sorted(
                str(pk) for pk in related.values_list("pk", flat=True)
            )
        elif action in ("post_add", "post_remove", "post_clear"):
            before = instance.__dict__.get("_auditlog_members", {}).pop(name, [])
            after = sorted(str(pk) for pk in related.values_list("pk", flat=True))
            if before != after:
                _record("update", instance, spec, {name: [before, after]}, using)

    return receiver
