"""The audit log for auditors: ``GET /admin/v1/audit`` (role ``auditor``), oldest first, filtered,
paginated with an opaque ``next`` cursor. Proving the log is ``surgegate audit verify``'s work."""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, field_validator

from admission.keys import POOL
from shared import audit
from shared.errors import ValidationFailed
from shared.http import json_response, validate
from shared.staff import Role, requires

MAX_PAGE = 1000
_CURSOR_PREFIX = "a1:"  # versions the cursor's form, so it can change without misreading old ones


class AuditQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")
    event_id: str | None = Field(default=None, min_length=1, max_length=200)
    since: datetime | None = None
    action: str | None = Field(default=None, min_length=1, max_length=64)
    limit: int = Field(default=100, ge=1, le=MAX_PAGE)
    cursor: str | None = Field(default=None, min_length=1, max_length=100)

    @field_validator("since")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


def encode_cursor(audit_id: int) -> str:
    return base64.urlsafe_b64encode(f"{_CURSOR_PREFIX}{audit_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int:
    """The audit_id a page starts after (0: from the start); ValidationFailed for a cursor we never gave."""
    if cursor is None:
        return 0
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (ValueError, binascii.Error):
        text = ""
    digits = text.removeprefix(_CURSOR_PREFIX)
    if not text.startswith(_CURSOR_PREFIX) or not digits.isascii() or not digits.isdigit() or len(digits) > 18:
        raise ValidationFailed("cursor is not one this API gave (pass the `next` of the previous page)")
    return int(digits)


def entry_json(row: Any) -> dict[str, Any]:
    entry = {k: audit.plain(v) for k, v in row.items()}
    entry["sealed"] = entry.pop("seq") is not None
    return entry


@requires(Role.AUDITOR)
async def list_audit(request: web.Request) -> web.Response:
    q = validate(AuditQuery, dict(request.query))
    after = decode_cursor(q.cursor)
    async with request.app[POOL].acquire() as con:
        rows = await audit.page(con, event_id=q.event_id, since=q.since, action=q.action, after=after, limit=q.limit)
    more = len(rows) > q.limit
    rows = rows[: q.limit]
    return json_response(
        {"entries": [entry_json(r) for r in rows], "next": encode_cursor(rows[-1]["audit_id"]) if more else None}
    )
