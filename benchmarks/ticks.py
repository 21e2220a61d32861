"""`emergency tick` as cron runs it: a fresh process a pass, against the sandbox served by
this one. Its CPU is the child's (getrusage of the children, user + system), the sandbox's
serving stays in this process."""

from __future__ import annotations

import compileall
import os
import re
import resource
import subprocess
import sys
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import automation
from automation.config import Config
from benchmarks.idle import Bench, Samples

EMERGENCY = Path(sys.executable).parent / "emergency"
ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class TickCost:
    """Idle ticks: requests of the last (exact), the CPU of each process, and how much of one
    process's time went to imports (``python -X importtime``)."""

    requests: int
    cpu: Samples
    naive_cpu: Samples
    imports: float


def write_config(cfg: Config) -> Path:
    """The config.toml of a worker's settings, for the command line (Zendesk only)."""
    path = cfg.state_path.parent / "tick.toml"
    listing = f"view_id = {cfg.zendesk.view_id}" if cfg.zendesk.view_id else ""
    path.write_text(f"""[zendesk]
url = "{cfg.zendesk.url}"
email = "{cfg.zendesk.email}"
updates_per_minute = {min(cfg.zendesk.updates_per_minute, 100):g}
{listing}

[workflow]
bridge_url = "{cfg.workflow.bridge_url}"
follow_up_after_minutes = {cfg.workflow.follow_up_after_minutes}

[state]
path = "{cfg.state_path}"
""", encoding="utf-8")
    return path


def tick(config: Path, token: str, *flags: str) -> tuple[float, str]:
    """One `emergency tick` process: its CPU seconds (user + system) and its stderr."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("EMERGENCY_")}
    environ["ZENDESK_API_TOKEN"] = token
    return _child([sys.executable, *flags, str(EMERGENCY), "--config", str(config), "tick"],
                  environ)


def _child(argv: list[str], environ: dict[str, str] | None = None) -> tuple[float, str]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(argv, env=environ, cwd=ROOT, capture_output=True, text=True,
                          check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {done.returncode}: {done.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu, done.stderr


def idle_ticks(bench: Bench, runs: int, naive_runs: int) -> TickCost:
    """``runs`` idle ticks a minute apart (the in-process worker closed: the state file is
    theirs), then ``naive_runs`` naive poller processes."""
    bench.worker.close()
    config, sandbox = write_config(bench.config), bench.sandbox
    # The package's bytecode first, as `pip install` leaves it: an editable install compiles
    # nothing, and with PYTHONDONTWRITEBYTECODE set every tick would compile the source anew.
    compileall.compile_dir(Path(automation.__file__).parent, quiet=1)
    cpu = []
    for _ in range(runs):
        bench.clock.advance(timedelta(minutes=1))
        sandbox.clear_requests()
        cpu.append(tick(config, sandbox.token)[0])
    requests = len(sandbox.requests)
    naive = [_child([sys.executable, "-m", "benchmarks.naive", sandbox.url,
                     str(bench.account.view_id), sandbox.email, sandbox.token])[0]
             for _ in range(naive_runs)]
    _, trace = tick(config, sandbox.token, "-X", "importtime")
    return TickCost(requests, Samples(tuple(cpu)), Samples(tuple(naive)), import_seconds(trace))


def import_seconds(trace: str) -> float:
    """The time `-X importtime` says the top-level imports took, in all."""
    micros = 0
    for line in trace.splitlines():
        found = re.match(r"import time:\s+\d+ \|\s+(\d+) \| (\s*)\S", line)
        if found and not found.group(2):
            micros += int(found.group(1))
    return micros / 1e6
