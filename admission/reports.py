"""Reports for the ``reporting`` role: ``GET /admin/v1/reports/{kind}``, as JSON or CSV (``Accept: text/csv``).

Counts only, small cells suppressed (shared/reports.py); never a row per person.
"""

from __future__ import annotations

from aiohttp import web

from admission.keys import READS, SETTINGS
from shared import reports
from shared.http import json_response, validate
from shared.staff import Role, requires


def wants_csv(request: web.Request) -> bool:
    """CSV when the Accept header names ``text/csv`` (any parameters); JSON otherwise."""
    accepted = (part.split(";", 1)[0].strip().lower() for part in request.headers.get("Accept", "").split(","))
    return "text/csv" in accepted


@requires(Role.REPORTING)
async def get_report(request: web.Request) -> web.Response:
    kind = reports.kind_of(request.match_info["kind"])
    query = validate(reports.ReportQuery, dict(request.query))
    async with (await request.app[READS].pool()).acquire() as con:  # may lag: the replica, if any
        report = await reports.build_report(con, kind, query, request.app[SETTINGS].report_min_cell)
    headers = {"Cache-Control": "no-store"}
    if wants_csv(request):
        return web.Response(text=reports.to_csv(report), content_type="text/csv", charset="utf-8", headers=headers)
    return json_response({"rows": report.rows}, headers=headers)
