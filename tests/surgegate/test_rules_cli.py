"""`surgegate rules ...` against a live booking API over HTTP."""

from __future__ import annotations

import json
from pathlib import Path

import asyncpg
import pytest
import yaml

from tests.helpers import ADMIN
from tests.shared.test_rules import rule_set
from tests.surgegate.test_supply_cli import api_url, cli

__all__ = ["api_url"]  # the fixture, shared with the supply CLI's test


async def test_rules_from_the_command_line(
    api_url: str, pool: asyncpg.Pool, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    await pool.execute("INSERT INTO events (event_id, name, rate_per_s, admission_ttl_s) VALUES ('ev', 'E', 1, 900)")
    common = ["rules", "--api-url", api_url, "--admin-token", ADMIN]
    first = tmp_path / "v1.yaml"
    first.write_text(yaml.safe_dump(rule_set()))
    code, out, err = await cli(capsys, *common, "create", "ev", str(first))
    assert code == 0, err
    assert json.loads(out)["rule_version"] == 1
    second = tmp_path / "v2.json"
    body = rule_set(examples=[])
    body["rules"][1]["expr"] = 'region in ["A", "B"]'
    second.write_text(json.dumps(body))
    last = ["--api-url", api_url, "--admin-token", ADMIN]  # options after the action work too
    assert (await cli(capsys, "rules", "create", "ev", str(second), *last))[0] == 0
    code, out, _ = await cli(capsys, *common, "diff", "ev", "1", "2")
    assert code == 0 and json.loads(out)["rules"]["changed"] == ["region"]
    assert (await cli(capsys, *common, "publish", "ev", "1", "--reason", "opening"))[0] == 0
    assert (await cli(capsys, *common, "shadow", "ev", "2", "--reason", "try B too"))[0] == 0
    code, out, _ = await cli(capsys, *common, "shadow-report", "ev", "2")
    assert code == 0 and json.loads(out)["evaluations"] == 0
    assert (await cli(capsys, *common, "publish", "ev", "2", "--reason", "B joins"))[0] == 0
    code, out, _ = await cli(capsys, *common, "rollback", "ev", "--reason", "B was not meant yet")
    assert code == 0 and json.loads(out)["rule_version"] == 1
    code, out, _ = await cli(capsys, *common, "list", "ev")
    listed = json.loads(out)
    assert listed["published"] == 1 and [v["state"] for v in listed["versions"]] == ["published", "retired"]
    code, out, _ = await cli(capsys, *common, "show", "ev", "2")
    assert code == 0 and json.loads(out)["history"][-1]["reason"] == "B was not meant yet"
    code, out, _ = await cli(capsys, *common, "replay", "ev", "--from", "1", "--to", "2")
    assert code == 0 and json.loads(out)["flips"] == [] and json.loads(out)["newly_flagged"] == 0
    code, out, _ = await cli(capsys, *common, "flagged", "ev", "--all")
    assert code == 0 and json.loads(out) == {"event_id": "ev", "reviews": []}
    # Refusals exit 1 naming the code; a bad file names the file.
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(rule_set(rules=[{"id": "r", "expr": "age >", "reason": "x",
                                                   "text": {"en": "x", "es": "x"}}])))  # fmt: skip
    code, _, err = await cli(capsys, *common, "create", "ev", str(broken))
    assert code == 1 and "validation_error" in err and "rule 'r' does not compile" in err
    code, _, err = await cli(capsys, *common, "create", "ev", str(tmp_path / "missing.yaml"))
    assert code == 1 and "missing.yaml" in err
    code, _, err = await cli(capsys, *common, "publish", "ev", "9", "--reason", "x")
    assert code == 1 and "not_found" in err
