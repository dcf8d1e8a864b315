"""PostgreSQL access: pool creation and versioned migrations.

Migrations are the ``NNNN_name.sql`` files in ``shared/migrations``, applied in order, each in its
own transaction together with its row in ``schema_migrations``; a session advisory lock makes
concurrent ``migrate`` runs wait for each other, so running it again is always safe.
"""

from __future__ import annotations

import json
from importlib import resources

import asyncpg

from shared.locks import LOCK_TIMEOUT_MS, LockNamespace, session_lock, session_unlock

# PostgreSQL away or going away: refused or lost connections (OSError covers refused, reset and
# timed-out sockets), a server starting up or shutting down (57P01-57P03, "cannot connect now"), one
# out of connection slots. A pool recovers from all of them by itself: it reconnects on the next
# acquire. Whoever catches them tries again later; nothing else is lost (a transaction is whole or not).
DATABASE_UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    # Raised while the pool hands back a connection the server dropped (PostgreSQL shutting down).
    asyncpg.InternalClientError,
)


async def _init_connection(con: asyncpg.Connection) -> None:
    await con.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def create_pool(dsn: str, *, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    pool: asyncpg.Pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        init=_init_connection,
        command_timeout=30,
        server_settings={"lock_timeout": str(LOCK_TIMEOUT_MS)},
    )
    return pool


async def connect(dsn: str) -> asyncpg.Connection:
    """One connection with the same codecs as the pool's (jsonb as Python values)."""
    con: asyncpg.Connection = await asyncpg.connect(dsn)
    await _init_connection(con)
    return con


def migration_files() -> list[tuple[str, str]]:
    """[(version, sql)] sorted by version."""
    folder = resources.files("shared") / "migrations"
    found = [(f.name.removesuffix(".sql"), f.read_text()) for f in folder.iterdir() if f.name.endswith(".sql")]
    return sorted(found)


async def migrate(con: asyncpg.Connection) -> list[str]:
    """Apply pending migrations; return the versions applied now (empty when up to date)."""
    # The runner's own bookkeeping SQL stays here rather than in shared/queries.py: it must work before
    # any migration has run, belongs to no domain, and nothing else uses it, so it reads best in place.
    await session_lock(con, LockNamespace.MIGRATIONS, "migrations")
    try:
        await con.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {r["version"] for r in await con.fetch("SELECT version FROM schema_migrations")}
        applied: list[str] = []
        for version, sql in migration_files():
            if version in done:
                continue
            async with con.transaction():
                await con.execute(sql)
                await con.execute("INSERT INTO schema_migrations (version) VALUES ($1)", version)
            applied.append(version)
        return applied
    finally:
        await session_unlock(con, LockNamespace.MIGRATIONS, "migrations")
