"""The admin index's one line per source: events today, the newest event, failures today."""

from django import template

from auditlog.reading.selectors import sources_summary

register = template.Library()


@register.simple_tag
def auditlog_sources_summary():
    return sources_summary()
