"""Settings from the environment: defaults, good values, and every bad value refused with its
variable's name and what it expects (never a bare ValueError from deep inside)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from pydantic import ValidationError

from shared.settings import Settings, SettingsError

KEYS = "k1:first-secret-key-0001, k2:second-secret-key-002"

GOOD = {
    "SURGEGATE_DATABASE_URL": "postgresql://u:p@db:5432/sg",
    "SURGEGATE_REDIS_URL": "redis://cache:6379/1",
    "SURGEGATE_SECRET_KEYS": KEYS,
    "SURGEGATE_ADMIN_TOKEN": "tok-a, tok-b,",
    "SURGEGATE_PERSON_KEY": "a-person-key",
    "SURGEGATE_HOST": "0.0.0.0",
    "SURGEGATE_EDGE_PORT": "18080",
    "SURGEGATE_API_PORT": "18081",
    "SURGEGATE_WORKER_METRICS_PORT": "0",
    "SURGEGATE_PUBLIC_EDGE_URL": "https://queue.example.org",
    "SURGEGATE_PUBLIC_API_URL": "https://api.example.org/",
    "SURGEGATE_CORS_ORIGINS": "https://a.example.org,https://b.example.org",
    "SURGEGATE_BOOKING_WAIT_S": "0.5",
    "SURGEGATE_POLL_BUDGET_PER_S": "500",
    "SURGEGATE_JOIN_LIMIT_PER_MIN": "0",
    "SURGEGATE_JOIN_LIMIT_BURST": "0",
    "SURGEGATE_TRUSTED_PROXIES": "10.0.0.0/8, 2001:db8::/32",
    "SURGEGATE_LOG_LEVEL": "debug",
    "SURGEGATE_HOLD_TTL_S": "60",
    "SURGEGATE_WAITLIST_OFFER_SIZE": "1",
    "SURGEGATE_WAITLIST_OFFER_WINDOW_S": "3600",
    "SURGEGATE_SEARCH_CACHE_S": "0",
}


def test_defaults() -> None:
    settings = Settings.from_env({})
    assert settings == Settings()
    assert (settings.edge_port, settings.api_port, settings.worker_metrics_port) == (8080, 8081, 9101)
    assert (settings.hold_ttl_s, settings.booking_wait_s, settings.log_level) == (300, 2.0, "INFO")
    assert (settings.join_limit_per_min, settings.join_limit_burst) == (30.0, 10)
    assert (settings.waitlist_offer_size, settings.waitlist_offer_window_s, settings.search_cache_s) == (3, 7200, 1.0)
    assert settings.secret_keys == settings.admin_tokens == settings.cors_origins == settings.trusted_proxies == ()
    assert settings.database_url is settings.redis_url is settings.person_key is None


def test_empty_variables_count_as_unset() -> None:
    assert Settings.from_env(dict.fromkeys(GOOD, "")) == Settings()


def test_good_values_parse() -> None:
    settings = Settings.from_env(GOOD)
    assert settings.database_url == "postgresql://u:p@db:5432/sg"
    assert settings.redis_url == "redis://cache:6379/1"
    assert settings.secret_keys == (("k1", "first-secret-key-0001"), ("k2", "second-secret-key-002"))
    assert settings.admin_tokens == ("tok-a", "tok-b")
    assert settings.person_key == "a-person-key"
    assert settings.host == "0.0.0.0"
    assert (settings.edge_port, settings.api_port, settings.worker_metrics_port) == (18080, 18081, 0)
    assert settings.edge_url == "https://queue.example.org" and settings.api_url == "https://api.example.org"
    assert settings.cors_origins == ("https://a.example.org", "https://b.example.org")
    assert settings.booking_wait_s == 0.5 and settings.poll_budget_per_s == 500.0
    assert (settings.join_limit_per_min, settings.join_limit_burst) == (0.0, 0)
    assert settings.trusted_proxies == ("10.0.0.0/8", "2001:db8::/32")
    assert settings.log_level == "DEBUG"
    assert (settings.hold_ttl_s, settings.waitlist_offer_size, settings.waitlist_offer_window_s) == (60, 1, 3600)
    assert settings.search_cache_s == 0.0


@pytest.mark.parametrize(
    ("variable", "value", "expects"),
    [
        ("SURGEGATE_HOLD_TTL_S", "abc", "a whole number above 0"),
        ("SURGEGATE_HOLD_TTL_S", "0", "a whole number above 0"),
        ("SURGEGATE_HOLD_TTL_S", "2.5", "a whole number above 0"),
        ("SURGEGATE_WAITLIST_OFFER_SIZE", "-1", "a whole number above 0"),
        ("SURGEGATE_WAITLIST_OFFER_WINDOW_S", "two hours", "a whole number above 0"),
        ("SURGEGATE_BOOKING_WAIT_S", "x", "a number (0 or more)"),
        ("SURGEGATE_BOOKING_WAIT_S", "-1", "a number (0 or more)"),
        ("SURGEGATE_BOOKING_WAIT_S", "nan", "a number (0 or more)"),
        ("SURGEGATE_SEARCH_CACHE_S", "inf", "a number (0 or more)"),
        ("SURGEGATE_POLL_BUDGET_PER_S", "0", "a number above 0"),
        ("SURGEGATE_JOIN_LIMIT_PER_MIN", "-30", "a number (0 or more)"),
        ("SURGEGATE_JOIN_LIMIT_BURST", "-3", "a whole number (0 or more)"),
        ("SURGEGATE_JOIN_LIMIT_BURST", "ten", "a whole number (0 or more)"),
        ("SURGEGATE_API_TOKEN_WRITE_LIMIT_PER_MIN", "-1", "a number (0 or more)"),
        ("SURGEGATE_API_CLIENT_READ_LIMIT_BURST", "lots", "a whole number (0 or more)"),
        ("SURGEGATE_MAX_KEYS_PER_ADMISSION", "-5", "a whole number (0 or more)"),
        ("SURGEGATE_EDGE_PORT", "70000", "a port number (0 to 65535)"),
        ("SURGEGATE_API_PORT", "-1", "a port number (0 to 65535)"),
        ("SURGEGATE_WORKER_METRICS_PORT", "http", "a port number (0 to 65535)"),
        ("SURGEGATE_LOG_LEVEL", "loud", "a logging level: DEBUG, INFO, WARNING, ERROR or CRITICAL"),
    ],
)
def test_a_bad_value_names_its_variable_and_what_it_expects(variable: str, value: str, expects: str) -> None:
    with pytest.raises(SettingsError) as refused:
        Settings.from_env({**GOOD, variable: value})
    assert str(refused.value) == f"{variable} must be {expects}, not {value!r}"


def test_every_bad_variable_is_named_at_once() -> None:
    env = {"SURGEGATE_HOLD_TTL_S": "abc", "SURGEGATE_EDGE_PORT": "70000"}
    with pytest.raises(SettingsError, match=r"SURGEGATE_EDGE_PORT must be .*; SURGEGATE_HOLD_TTL_S must be"):
        Settings.from_env(env)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("k1", "SURGEGATE_SECRET_KEYS must be comma-separated kid:secret pairs"),
        ("k1:too-short", "SURGEGATE_SECRET_KEYS must be comma-separated kid:secret pairs"),
        ("bad kid:long-enough-secret-0001", "SURGEGATE_SECRET_KEYS must be comma-separated kid:secret pairs"),
        ("k1:long-enough-secret-0001,k1:long-enough-secret-0002", "SURGEGATE_SECRET_KEYS has a repeated kid"),
    ],
)
def test_bad_secret_keys(value: str, message: str) -> None:
    with pytest.raises(SettingsError, match=message) as refused:
        Settings.from_env({"SURGEGATE_SECRET_KEYS": value})
    assert "long-enough-secret" not in str(refused.value)  # a secret never reaches the message


def test_direct_construction_and_replace_check_ranges_too() -> None:
    with pytest.raises(ValidationError):
        Settings(hold_ttl_s=0)
    with pytest.raises(ValidationError):
        replace(Settings(), edge_port=70000)
    assert replace(Settings(), edge_port=1234).edge_port == 1234


def test_the_booking_api_limits_and_caps_read_from_the_environment_and_0_disables() -> None:
    env = {f"SURGEGATE_API_{who}_{kind}_LIMIT_{part}": "0" for who in ("TOKEN", "CLIENT")
           for kind in ("READ", "WRITE") for part in ("PER_MIN", "BURST")}  # fmt: skip
    settings = Settings.from_env({**GOOD, **env, "SURGEGATE_MAX_HOLDS_PER_ADMISSION": "0",
                                  "SURGEGATE_MAX_KEYS_PER_ADMISSION": "7"})  # fmt: skip
    assert settings.api_token_read_limit_per_min == settings.api_client_write_limit_burst == 0
    assert (settings.max_holds_per_admission, settings.max_keys_per_admission) == (0, 7)
    defaults = Settings()
    assert (defaults.api_token_write_limit_per_min, defaults.api_token_write_limit_burst) == (20.0, 10)
    assert (defaults.api_token_read_limit_per_min, defaults.api_token_read_limit_burst) == (120.0, 60)


@pytest.mark.parametrize("url", ["http://mail:25", "smtp://", "smtp://user:s3cret@mail:port", "mail.example.org"])
def test_a_bad_smtp_url_is_refused_without_repeating_it(url: str) -> None:
    with pytest.raises(SettingsError) as refused:
        Settings.from_env({**GOOD, "SURGEGATE_SMTP_URL": url})
    assert "SURGEGATE_SMTP_URL must be smtp://" in str(refused.value)
    assert "s3cret" not in str(refused.value)
    good = Settings.from_env({**GOOD, "SURGEGATE_SMTP_URL": "smtps://u:p%40ss@mail.example.org:465"})
    assert good.smtp_url == "smtps://u:p%40ss@mail.example.org:465"


def test_the_queue_redis_defaults_to_the_waiting_rooms_and_the_replica_settings_parse() -> None:
    s = Settings.from_env({"SURGEGATE_REDIS_URL": "redis://room:6379/0"})
    assert s.require_queue_redis() == "redis://room:6379/0"
    assert s.database_replica_url is None and s.replica_max_lag_s == 5.0
    s = Settings.from_env(
        {
            "SURGEGATE_REDIS_URL": "redis://room:6379/0",
            "SURGEGATE_QUEUE_REDIS_URL": "redis://queue:6379/0",
            "SURGEGATE_DATABASE_REPLICA_URL": "postgresql://replica/db",
            "SURGEGATE_REPLICA_MAX_LAG_S": "2.5",
        }
    )
    assert s.require_queue_redis() == "redis://queue:6379/0"
    assert (s.database_replica_url, s.replica_max_lag_s) == ("postgresql://replica/db", 2.5)
    with pytest.raises(SettingsError, match="SURGEGATE_REPLICA_MAX_LAG_S"):
        Settings.from_env({"SURGEGATE_REPLICA_MAX_LAG_S": "-1"})
    with pytest.raises(SettingsError, match="SURGEGATE_QUEUE_REDIS_URL"):
        Settings().require_queue_redis()
