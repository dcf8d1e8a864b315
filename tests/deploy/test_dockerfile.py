"""deploy/Dockerfile builds the package the tests install: the project itself (`pip install .`),
with every package pyproject.toml ships copied in, and runs its console script as a numeric
non-root user. Parsed, not built: the development machines and CI have no container engine."""

from __future__ import annotations

import io
import shlex
import tomllib
from pathlib import Path

import pytest
from dockerfile_parse import DockerfileParser

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "Dockerfile"


def problems(text: str) -> list[str]:
    """What keeps the image from being the tested package, in words; empty when it is."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    parser = DockerfileParser(fileobj=io.BytesIO(text.encode()))
    found: list[str] = []
    copied: set[str] = set()
    installs_project = False
    for step in parser.structure:
        if step["instruction"] not in {"COPY", "ADD", "RUN"}:
            continue
        words = shlex.split(step["value"])
        if step["instruction"] in {"COPY", "ADD"}:
            copied.update(w.rstrip("/") for w in words[:-1] if not w.startswith("--"))
        if step["instruction"] == "RUN" and "pip" in words and "install" in words:
            targets = [w for w in words[words.index("install") + 1 :] if not w.startswith("-")]
            installs_project = installs_project or "." in targets[:1] or targets[:1] == ["./"]
    if not installs_project:
        found.append("no `pip install .` of the copied project")
    packages = {p.rstrip("*") for p in project["tool"]["setuptools"]["packages"]["find"]["include"]}
    needed = packages | {"pyproject.toml", project["project"]["readme"]}
    if missing := needed - copied:
        found.append(f"not copied into the image: {sorted(missing)}")
    [script] = project["project"]["scripts"]
    if parser.structure and [s["value"] for s in parser.structure if s["instruction"] == "ENTRYPOINT"][-1:] != [
        f'["{script}"]'
    ]:
        found.append(f"the entrypoint is not the {script} console script")
    users = [s["value"] for s in parser.structure if s["instruction"] == "USER"]
    if users[-1:] != ["10001"]:
        found.append("the image does not end as user 10001 (deploy/k8s runAsUser)")
    return found


def test_the_image_installs_this_project() -> None:
    assert problems(DOCKERFILE.read_text()) == []


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        (("pip install --no-cache-dir .", "pip install --no-cache-dir surgegate"), "pip install ."),
        (("COPY booking_worker booking_worker\n", ""), "booking_worker"),
        (("COPY pyproject.toml README.md ./", "COPY pyproject.toml ./"), "README.md"),
        (("USER 10001", "USER surgegate"), "10001"),
        (('ENTRYPOINT ["surgegate"]', 'ENTRYPOINT ["python", "-m", "surgegate"]'), "entrypoint"),
    ],
)
def test_the_check_bites(change: tuple[str, str], complaint: str) -> None:
    """Negative control: an image installing from PyPI, missing a package or the readme, running
    as a named user or not through the console script, is refused."""
    text = DOCKERFILE.read_text()
    assert change[0] in text
    found = problems(text.replace(*change))
    assert any(complaint in p for p in found), found
