"""The demo data `seed --demo` loads: an open event, three sites in three zones, their weekly hours."""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg

from admission.admin import SiteIn, upsert_site
from shared.schedules import regenerate
from shared.supply import store_schedule
from surgegate import queries
from waitingroom.events import Event, get_event, save_event

DEMO_EVENT = Event(
    event_id="demo",
    name="Demo cohort opening",
    rate_per_s=2.0,
    opens_at=None,
    prequeue_opens_at=None,
    closes_at=None,
    paused=False,
    admission_ttl_s=900,
    site_ids=None,
)

DEMO_SITES = [
    SiteIn(site_id="nyc-midtown", name="Midtown Health Center", region="New York",
           timezone="America/New_York", lat=40.7549, lng=-73.9840, address="250 W 43rd St, New York, NY 10036"),
    SiteIn(site_id="berlin-mitte", name="Impfzentrum Mitte", region="Berlin",
           timezone="Europe/Berlin", lat=52.5200, lng=13.4050, address="Karl-Marx-Allee 1, 10178 Berlin"),
    SiteIn(site_id="sydney-cbd", name="Sydney CBD Clinic", region="New South Wales",
           timezone="Australia/Sydney", lat=-33.8688, lng=151.2093, address="1 Martin Pl, Sydney NSW 2000"),
]  # fmt: skip


DEMO_TYPE = "vaccination"


async def seed_demo(con: asyncpg.Connection, *, days: int = 7, now: datetime | None = None) -> bool:
    """Load the demo in the caller's transaction; returns False (and does nothing) if already there.

    Supply comes the way a program would set it up: an appointment type (30 minutes, 5 seats, 5
    minutes' notice, cancel-by cut-off of an hour) and each site's weekly hours, 09:00-17:00 local
    time every day, from which the worker keeps generating slots as days pass."""
    if await get_event(con, DEMO_EVENT.event_id) is not None:
        return False
    await save_event(con, DEMO_EVENT)
    now = now or datetime.now(UTC)
    await con.execute(queries.INSERT_DEMO_TYPE, DEMO_TYPE, days)
    for site in DEMO_SITES:
        await upsert_site(con, site)
        await store_schedule(con, site.site_id, DEMO_TYPE, {weekday: [(9 * 60, 17 * 60)] for weekday in range(1, 8)})
        await regenerate(con, site.site_id, DEMO_TYPE, now=now)
    return True
