"""Logs as JSON lines (AUDITLOG_LOG_FORMAT=json, the default; "text" for a terminal): time, level,
logger, process id, message, the request id of the request being served, and the record's extra fields.
Configured through the standard `logging` module (config/settings.py's LOGGING), so every
logger, management commands' included, writes the same way."""

import contextvars
import json
import logging
import time

# The id of the request this thread serves (auditlog.monitoring.requests sets it).
REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("auditlog_request_id", default=None)

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "process": record.process,
            "message": record.getMessage(),
        }
        request_id = REQUEST_ID.get()
        if request_id is not None:
            data["request_id"] = request_id
        for name, value in record.__dict__.items():
            if name not in _STANDARD and not name.startswith("_"):
                data[name] = value
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False, default=str)
