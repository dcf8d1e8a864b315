"""How the processes write their log: readable lines, or JSON lines for log shippers.

``SURGEGATE_LOG_FORMAT=json`` makes every record one JSON object on one line — ``time`` (ISO 8601,
UTC), ``level``, ``logger``, ``message`` and, when there is one, ``exception`` (the traceback as
text) — which Loki, Elasticsearch or CloudWatch read without a parsing rule. Records hold what the
code logged and nothing else: no request bodies (no module logs them) and no person data.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

from aiohttp.abc import AbstractAccessLogger
from aiohttp.web import BaseRequest, StreamResponse

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonLines(logging.Formatter):
    """One JSON object per record, on one line (newlines inside a message or traceback are escaped).

    Hand-written because it is a dict and ``json.dumps``; python-json-logger would add a dependency
    for the same lines. ASCII-only output, so any byte a client sent survives the stream's encoding.
    """

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, str] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry)


def formatter(log_format: str) -> logging.Formatter:
    """The formatter of ``SURGEGATE_LOG_FORMAT``: ``json`` or ``text``."""
    return JsonLines() if log_format == "json" else logging.Formatter(TEXT_FORMAT)


class RouteAccessLogger(AbstractAccessLogger):
    """``SURGEGATE_ACCESS_LOG``'s line per request: client, method, the matched route's template,
    status, bytes and seconds.

    Never the query string nor a path's own values: manage links, claim links and reminder opt-out
    links carry their credential in the URL's first hop, and aiohttp's default line (``%r``) would
    write it down; and a path's values are whatever a client sent (newlines too, once decoded). A
    request that matched no route is logged with ``-`` for its route."""

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        route = "-"
        match_info = getattr(request, "match_info", None)
        resource = None if match_info is None or match_info.route is None else match_info.route.resource
        if resource is not None and resource.canonical:
            route = resource.canonical
        self.logger.info(
            "%s %s %s %s %s %.3f", request.remote, request.method, route, response.status, response.body_length, time
        )
