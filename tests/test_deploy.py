"""The deployment files: systemd units that systemd accepts, hardened; a container image that
runs as a user and checks its own health; a compose file that parses and wires the sandbox.

No Docker engine is needed (or used): the files are read, not built."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from automation.cli.parser import build_parser
from tests.test_cli import every_command

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
INSTALLED = "/opt/emergency/.venv/bin/emergency"
SERVICE = "emergency-automation.service"
UNITS = (SERVICE, "emergency-tick.service", "emergency-tick.timer")
# Where distributions keep systemd's own units: ours must not take one of their names.
SYSTEM_UNIT_DIRS = (Path("/lib/systemd/system"), Path("/usr/lib/systemd/system"))
HARDENING = {
    "DynamicUser": "yes", "StateDirectory": "emergency", "ProtectSystem": "strict",
    "ProtectHome": "yes", "PrivateTmp": "yes", "NoNewPrivileges": "yes",
    "ProtectKernelTunables": "yes", "ProtectKernelModules": "yes",
    "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX", "CapabilityBoundingSet": "",
    "EnvironmentFile": "/etc/emergency/secrets.env",
    "Environment": "EMERGENCY_CONFIG=/etc/emergency/config.toml",
    "KillSignal": "SIGTERM", "TimeoutStopSec": "60",
}


def unit(name: str) -> dict[str, dict[str, list[str]]]:
    """A unit file's sections, each key with every value it is given (keys may repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for line in (DEPLOY / name).read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[] "), {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


@pytest.mark.parametrize("name", UNITS)
def test_no_unit_takes_the_name_of_one_of_systemds_own(name: str) -> None:
    # emergency.service is systemd's emergency shell: sysinit.target conflicts with it, so a
    # unit of that name never starts at boot, and a broken boot would start it instead
    assert name.split(".")[0] not in ("emergency", "rescue")
    assert not any((folder / name).exists() for folder in SYSTEM_UNIT_DIRS)


@pytest.mark.parametrize("name", [SERVICE, "emergency-tick.service"])
def test_the_services_are_hardened_and_read_their_secrets_from_the_environment_file(
        name: str) -> None:
    service = unit(name)["Service"]

    for key, value in HARDENING.items():
        assert value in service.get(key, []), (name, key, service.get(key))
    assert "@system-service" in service["SystemCallFilter"]
    # the state file belongs in the state directory, as the config is told to put it
    assert service["WorkingDirectory"] == ["/var/lib/emergency"]
    assert 'path = "/var/lib/emergency/state.sqlite3"' in (DEPLOY / name).read_text()


def test_the_service_serves_and_the_timer_ticks_every_minute() -> None:
    service, tick = unit(SERVICE)["Service"], unit("emergency-tick.service")["Service"]
    timer = unit("emergency-tick.timer")["Timer"]

    assert service["Type"] == ["simple"] and service["ExecStart"] == [f"{INSTALLED} serve"]
    assert service["Restart"] == ["on-failure"] and service["RestartSec"] == ["5"]
    assert tick["Type"] == ["oneshot"] and tick["ExecStart"] == [f"{INSTALLED} tick"]
    assert timer["OnCalendar"] == ["*-*-* *:*:00"] and timer["Unit"] == ["emergency-tick.service"]
    assert unit("emergency-tick.timer")["Install"]["WantedBy"] == ["timers.target"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_systemd_analyze_verify_accepts_the_units(tmp_path: Path) -> None:
    # given the units as installed, except that ExecStart names a program that exists here
    for name in UNITS:
        text = (DEPLOY / name).read_text(encoding="utf-8")
        (tmp_path / name).write_text(text.replace(INSTALLED, sys.executable), encoding="utf-8")

    # when systemd checks them
    result = subprocess.run(["systemd-analyze", "verify", *UNITS], cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)

    # then it has nothing to say about them (an unknown key or a bad value is a line here)
    said = [line for line in (result.stdout + result.stderr).splitlines()
            if any(name in line for name in UNITS)]
    assert result.returncode == 0 and said == [], result.stdout + result.stderr


# The container ---------------------------------------------------------------------------------


def instructions() -> list[tuple[str, str]]:
    """The Dockerfile's instructions (continuation lines joined), comments left out."""
    joined = re.sub(r"\\\n\s*", "", (ROOT / "Dockerfile").read_text(encoding="utf-8"))
    found = []
    for line in joined.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            keyword, _, rest = line.strip().partition(" ")
            found.append((keyword.upper(), rest.strip()))
    return found


def one(keyword: str) -> str:
    [value] = [rest for key, rest in instructions() if key == keyword]
    return value


def test_the_image_runs_as_a_user_not_root() -> None:
    [*_, user] = [rest for key, rest in instructions() if key == "USER"]
    uid = user.split(":")[0]

    assert uid not in ("root", "0") and uid.isdigit() and int(uid) >= 1000
    # and the state volume is that user's
    assert one("VOLUME") == "/var/lib/emergency"
    runs = " ".join(rest for key, rest in instructions() if key == "RUN")
    assert f"--uid {uid}" in runs and "chown emergency:emergency /var/lib/emergency" in runs


def test_the_image_checks_its_health_on_healthz_with_python() -> None:
    healthcheck = one("HEALTHCHECK")
    command = json.loads(healthcheck[healthcheck.index("CMD") + 3:])

    # slim has no curl: python -c with urllib, code that compiles, on the port CMD listens on
    assert command[:2] == ["python", "-c"]
    compile(command[2], "HEALTHCHECK", "exec")
    assert "urllib.request.urlopen('http://127.0.0.1:8080/healthz'" in command[2]
    assert json.loads(one("CMD")) == ["serve", "--listen", "0.0.0.0:8080"]
    assert json.loads(one("ENTRYPOINT")) == ["emergency"]
    assert one("FROM") == "python:3.11-slim"


def test_the_image_copies_what_pip_install_reads_and_dockerignore_keeps_it() -> None:
    import tomllib

    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    copied = {source for key, rest in instructions() if key == "COPY"
              for source in rest.split()[:-1]}
    ignored = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()

    needed = {"pyproject.toml", pyproject["project"]["readme"], "automation",
              *pyproject["tool"]["setuptools"]["package-dir"].values()}
    assert needed <= copied
    assert not copied & set(ignored)
    # with every optional extra the served pages use (the report's charts)
    runs = " ".join(rest for key, rest in instructions() if key == "RUN")
    extras = set(pyproject["project"]["optional-dependencies"]) - {"test"}
    assert all(f"[{extra}]" in runs for extra in extras), extras
    assert {".git", ".venv", "config.toml", "*.env", "*.sqlite3"} <= set(ignored)


# The compose file ------------------------------------------------------------------------------


def compose() -> dict[str, Any]:
    text = (ROOT / "compose.yaml").read_text(encoding="utf-8")
    try:
        import yaml
    except ImportError:  # no YAML parser here (none is a dependency): its shape, by reading
        for needed in ("services:", "  sandbox:", "  emergency:",
                       'network_mode: "service:sandbox"', "EMERGENCY_WEB_TOKEN:"):
            assert needed in text
        pytest.skip("no YAML parser installed: checked the compose file's shape only")
    parsed: dict[str, Any] = yaml.safe_load(text)
    return parsed


def test_compose_runs_the_service_in_the_sandboxs_network_against_its_config() -> None:
    services = compose()["services"]
    sandbox, service = services["sandbox"], services["emergency"]

    # the sandbox listens on 127.0.0.1: emergency shares its network namespace, so the
    # sandbox publishes emergency's port (a service in another's namespace cannot)
    assert service["network_mode"] == "service:sandbox" and "ports" not in service
    assert sandbox["ports"] == ["127.0.0.1:8080:8080"]
    assert service["depends_on"]["sandbox"]["condition"] == "service_healthy"
    assert "EMERGENCY_WEB_TOKEN" in service["environment"]
    # the config the sandbox writes is the one emergency reads, on a volume both mount
    written = sandbox["command"][sandbox["command"].index("--write-config") + 1]
    assert service["command"][:3] == ["--config", written, "serve"]
    assert service["command"][3:] == ["--listen", "0.0.0.0:8080"]
    assert sandbox["volumes"] == service["volumes"] == ["shared:/shared"]
    assert written.startswith("/shared/")


def test_compose_commands_are_ones_the_cli_takes() -> None:
    services = compose()["services"]
    parser = build_parser()

    args = parser.parse_args(services["sandbox"]["command"])
    assert (args.sandbox_command, args.port, args.speed) == ("serve", 8765, 60)
    if "serve" in every_command(parser):  # `emergency serve` is being added beside this file
        assert parser.parse_args(services["emergency"]["command"]).command == "serve"
