"""The config.toml that `emergency sandbox serve` writes: the worker pointed at the sandbox."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from automation.sandbox import Account
    from automation.sandbox.server import Sandbox

STATE_FILE = "sandbox-state.sqlite3"  # beside the config it writes
TEMPLATE = """# Written by `emergency sandbox serve`: points the worker at the local sandbox.
# export ZENDESK_API_TOKEN={token} PAGERDUTY_API_TOKEN={pd_token} SLACK_BOT_TOKEN={slack_token}
# export GITLAB_TOKEN={gitlab_token}
[zendesk]
url = "{url}"
email = "{email}"

[workflow]
bridge_url = "https://bridge.example.com/emergency"
poll_interval_seconds = 10
bridges = {{ "francesca@example.com" = "https://bridge.example.com/francesca" }}

[state]
path = "{state_file}"

[pagerduty]
url = "{pd_url}"
ca_file = "{pd_ca}"
from_email = "{email}"
service_id = "{pd_service}"
escalation_policy_id = "{pd_policy}"
managers_service_id = "{pd_managers}"
trigger_after_minutes = 0  # page at once: no Zendesk integration pages first in the sandbox

[slack]
url = "{slack_url}"
default_channel = "{channel}"

[gitlab]
url = "{gitlab_url}"
project = "{gitlab_project}"
template = "{gitlab_template}"
labels = ["emergency"]
"""


def config_text(sandbox: Sandbox, account: Account) -> str:
    """A config.toml for the running sandbox and its seeded account (tokens stay in comments)."""
    return TEMPLATE.format(
        url=sandbox.url, email=sandbox.email, token=sandbox.token,
        pd_token=sandbox.pagerduty.token, slack_token=sandbox.slack.token,
        pd_url=sandbox.pagerduty_url, pd_ca=sandbox.pagerduty_ca,
        pd_service=account.pd_service_id, pd_policy=account.pd_policy_id,
        pd_managers=account.pd_managers_service_id, slack_url=sandbox.slack_url,
        channel=account.self_managed_channel, gitlab_token=sandbox.gitlab.token,
        gitlab_url=sandbox.gitlab_url, gitlab_project=account.gitlab_project,
        gitlab_template=account.gitlab_template, state_file=STATE_FILE)


def write_config_file(path: Path, sandbox: Sandbox, account: Account) -> Path:
    """Write `config_text` to `path`, and start its state file afresh: one an earlier sandbox
    left there names that sandbox's tickets and Slack threads, whose numbers this one gives
    to others (its thread for #1 would be asked of this Slack, which never saw it)."""
    path.write_text(config_text(sandbox, account), encoding="utf-8")
    for suffix in ("", "-wal", "-shm"):
        (path.parent / f"{STATE_FILE}{suffix}").unlink(missing_ok=True)
    return path
