"""The deployment files and the README agree with the code: the Dockerfile and compose.yaml
run commands `parley` accepts, `.env.example` names only real settings (and loads), and
README's Configuration table lists every setting. (The image itself cannot be built here:
no container registry.)"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from cli import _parser
from core.config import Settings

ROOT = Path(__file__).resolve().parent.parent


def _env_names() -> set[str]:
    """Every name a setting is read from: its field name, and any alias."""
    names = set()
    for name, field in Settings.model_fields.items():
        names.add(name.upper())
        choices = getattr(field.validation_alias, "choices", None) or []
        names.update(str(c).upper() for c in choices)
    return names


def _accepted(command: list[str]) -> None:
    assert command[0] == "parley", command
    try:
        _parser().parse_args(command[1:])
    except SystemExit:
        pytest.fail(f"`parley` refuses {' '.join(command[1:])!r}")


def _compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "compose.yaml").read_text())  # type: ignore[no-any-return]


def test_the_dockerfile_runs_a_parley_command() -> None:
    text = (ROOT / "Dockerfile").read_text()
    cmd = re.search(r"^CMD (\[.*\])$", text, re.M)
    assert cmd, "no CMD in exec form"
    _accepted(json.loads(cmd.group(1)))
    assert re.search(r"^USER parley$", text, re.M), "the image runs as root"
    assert "--require-hashes -r requirements.lock" in text
    # Every package the project installs is copied into the image.
    for package in ("core", "domain", "jobs", "models", "resolvers", "runtime", "schema"):
        assert f"COPY {package} {package}" in text


def test_compose_runs_the_services_with_parley_commands() -> None:
    services = _compose()["services"]
    assert {"postgres", "redis", "migrate", "api-1", "api-2", "worker"} <= set(services)
    commands = {name: s["command"] for name, s in services.items() if s.get("build") == "."}
    assert commands == {
        "migrate": ["parley", "migrate"],
        "api-1": ["parley", "api", "--host", "0.0.0.0", "--port", "8000"],
        "api-2": ["parley", "api", "--host", "0.0.0.0", "--port", "8000"],
        "worker": ["parley", "worker"],
    }
    for command in commands.values():
        _accepted(command)
    names = _env_names()
    for name, service in services.items():
        if service.get("build") == ".":
            assert set(service["environment"]) <= names, name


def _env_example() -> dict[str, str]:
    values = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        found = re.match(r"^#?([A-Z][A-Z0-9_]*)=(.*)$", line)
        if found:
            values[found.group(1)] = found.group(2)
    return values


def test_env_example_names_real_settings_that_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    values = _env_example()
    assert {"ENV", "SECRET_KEY", "PUBLIC_URL", "ALLOWED_ORIGINS"} <= set(values)
    unknown = set(values) - _env_names()
    assert not unknown, f".env.example names settings that do not exist: {sorted(unknown)}"
    # As written (with SECRET_KEY filled in, as it says), it loads: every value parses.
    env_file = tmp_path / ".env"
    env_file.write_text("\n".join(f"{k}={v}" for k, v in values.items()) + "\n")
    for name in values:
        monkeypatch.delenv(name, raising=False)
    loaded = Settings(_env_file=env_file, secret_key="s" * 40)  # type: ignore[call-arg]
    assert loaded.env == "prod" and loaded.allowed_origins == ["https://app.example.com"]
    # Left empty, SECRET_KEY stops the API at start.
    with pytest.raises(ValueError, match="SECRET_KEY"):
        Settings(_env_file=env_file, secret_key="")  # type: ignore[call-arg]


def test_the_readme_lists_every_setting() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"^\| `([A-Z][A-Z0-9_]*)`", section, re.M))
    missing = sorted({name.upper() for name in Settings.model_fields} - listed)
    assert not missing, f"README.md's Configuration table lacks {missing}"
    assert not listed - _env_names(), f"README.md lists settings that do not exist: {sorted(listed - _env_names())}"


def test_the_readme_links_only_inside_the_repository() -> None:
    readme = (ROOT / "README.md").read_text()
    assert readme.count("```") % 2 == 0, "a code block never closes"
    for target in re.findall(r"\]\(([^)#]+)", readme) + re.findall(r"`(\.\./[^`]+)`", readme):
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        assert (ROOT / target).resolve().is_relative_to(ROOT) and (ROOT / target).exists(), f"README links {target}"
