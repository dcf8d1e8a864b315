"""deploy/compose.yaml against the Compose Specification's JSON schema, vendored in deploy/schemas/
(its source, commit and licence: deploy/schemas/README.md); nothing is fetched."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from surgegate.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_PATH = ROOT / "deploy" / "schemas" / "compose-spec.json"
COMPOSE_PATH = ROOT / "deploy" / "compose.yaml"


def validator() -> jsonschema.protocols.Validator:
    schema = json.loads(SCHEMA_PATH.read_text())
    # It names draft 7 without the trailing "#" that jsonschema looks the draft up by.
    assert schema["$schema"].rstrip("#") == "https://json-schema.org/draft-07/schema"
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def compose() -> dict[str, Any]:
    # safe_load resolves the `<<: *surgegate` merge keys as Compose does
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE_PATH.read_text())
    return loaded


def test_compose_file_is_valid() -> None:
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator().iter_errors(compose())]
    assert errors == []


@pytest.mark.parametrize(
    "breakage",
    [
        lambda c: c["services"]["edge"].update(depends_onn={}),  # a misspelt key
        lambda c: c["services"]["edge"].update(ports=8080),  # a wrong type
        lambda c: c["services"]["migrate"]["depends_on"].update(postgres={"condition": "service_done"}),
    ],
    ids=["unknown-key", "wrong-type", "unknown-condition"],
)
def test_the_schema_bites(breakage: Any) -> None:
    """Negative control: the same file, broken once, is refused."""
    broken = copy.deepcopy(compose())
    breakage(broken)
    assert list(validator().iter_errors(broken))


def test_vendored_schema_is_the_one_documented() -> None:
    """The file is upstream's, unchanged: its hash is the one deploy/schemas/README.md records."""
    digest = hashlib.sha256(SCHEMA_PATH.read_bytes()).hexdigest()
    assert digest in (ROOT / "deploy" / "schemas" / "README.md").read_text()
    assert (ROOT / "deploy" / "schemas" / "LICENSE.compose-spec").read_text().lstrip().startswith("Apache License")


def test_services_run_surgegate_commands_after_the_migration() -> None:
    services = compose()["services"]
    parser = build_parser()
    for name in ("migrate", "edge", "api", "worker"):
        parser.parse_args(services[name]["command"])  # SystemExit on a command the CLI lacks
        assert services[name]["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}
    for name in ("edge", "api", "worker"):
        assert services[name]["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
