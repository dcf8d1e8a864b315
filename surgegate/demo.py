"""The demo data `seed --demo` loads: an open event, three sites in three zones, a week of slots."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import asyncpg

from admission.admin import SiteIn, SlotsIn, create_slots, upsert_site
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
           timezone="America/New_York", lat=40.7549, lng=-73.9840),
    SiteIn(site_id="berlin-mitte", name="Impfzentrum Mitte", region="Berlin",
           timezone="Europe/Berlin", lat=52.5200, lng=13.4050),
    SiteIn(site_id="sydney-cbd", name="Sydney CBD Clinic", region="New South Wales",
           timezone="Australia/Sydney", lat=-33.8688, lng=151.2093),
]  # fmt: skip


async def seed_demo(con: asyncpg.Connection, *, days: int = 7, now: datetime | None = None) -> bool:
    """Load the demo in the caller's transaction; returns False (and does nothing) if already there."""
    if await get_event(con, DEMO_EVENT.event_id) is not None:
        return False
    await save_event(con, DEMO_EVENT)
    now = now or datetime.now(UTC)
    for site in DEMO_SITES:
        await upsert_site(con, site)
        today = now.astimezone(ZoneInfo(site.timezone)).date()
        for day in range(days):
            local_day = today + timedelta(days=day)
            # 09:00 to 17:00 wall time at the site, every 30 minutes, 5 seats each.
            spec = SlotsIn(
                site_id=site.site_id,
                starts_at=datetime(local_day.year, local_day.month, local_day.day, 9, 0),
                duration_minutes=30,
                capacity=5,
                count=16,
                every_minutes=30,
            )
            await create_slots(con, spec, site.timezone, id_seed="demo")
    return True
