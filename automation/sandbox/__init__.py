"""Fakes of Zendesk, Slack and PagerDuty for tests and demos: ``Sandbox``, ``seed_account``."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from automation.config import (
    Config,
    GitLabConfig,
    PagerDutyConfig,
    SlackConfig,
    WorkflowConfig,
    ZendeskConfig,
)
from automation.sandbox.faults import Fault, Faults, InterleavedComment
from automation.sandbox.gitlab import GitLabSandbox
from automation.sandbox.http import Reply
from automation.sandbox.pagerduty import PagerDutySandbox, SupportTeam
from automation.sandbox.server import RequestRecord, Sandbox
from automation.sandbox.slack import SlackSandbox
from automation.sandbox.zendesk import FakeZendesk

__all__ = [
    "Account",
    "FakeZendesk",
    "Fault",
    "Faults",
    "GitLabSandbox",
    "InterleavedComment",
    "Reply",
    "RequestRecord",
    "PagerDutySandbox",
    "Sandbox",
    "SlackSandbox",
    "SupportTeam",
    "URGENT_VIEW_ID",
    "sandbox_config",
    "sandbox_environ",
    "seed_account",
]

URGENT_VIEW_ID = 360_001
URGENT_VIEW_QUERY = "type:ticket priority:urgent status<solved"
GITLAB_PROJECT = "support/emergencies"
GITLAB_TEMPLATE = "Emergency Runbook"
# The team's issue template, as a project keeps it in .gitlab/issue_templates/.
RUNBOOK_TEMPLATE = """## Emergency Runbook

- [ ] Acknowledge the page and post the acknowledgement on the ticket
- [ ] Start the Slack thread; cc the account manager, ping the ASE
- [ ] Join the bridge; follow up after 15 minutes of silence
- [ ] Post-call notes (public), internal notes, hand-off to the next on-call
"""


@dataclass(frozen=True)
class Account:
    """Ids of the seeded users, organization and view."""

    admin_id: int
    agent_id: int
    account_manager_id: int
    ase_id: int
    organization_id: int
    requester_id: int
    cc_id: int
    view_id: int
    agent_email: str = "francesca@example.com"
    # Slack: the two emergency channels and the people the thread mentions.
    self_managed_channel: str = ""
    saas_channel: str = ""
    slack_manager_id: str = ""
    slack_ase_id: str = ""
    slack_agent_id: str = ""
    americas_group_id: str = ""
    # PagerDuty: Customer Support (Francesca on call now, Ravi next) and Support Managers.
    pd_service_id: str = ""
    pd_policy_id: str = ""
    pd_managers_service_id: str = ""
    pd_francesca_id: str = ""
    pd_ravi_id: str = ""
    pd_manager_id: str = ""
    second_agent_id: int = 0
    second_agent_email: str = "ravi.patel@example.com"
    pd_team: SupportTeam | None = None
    # GitLab: the project where each emergency's Emergency Runbook issue is opened.
    gitlab_project: str = GITLAB_PROJECT
    gitlab_template: str = GITLAB_TEMPLATE


def seed_account(sandbox: Sandbox) -> Account:
    """Fill the sandbox with a realistic account: API admin, agents, Acme Corp and its people."""
    zendesk = sandbox.zendesk
    account_manager_id = zendesk.add_user("Marco Bianchi", "marco.bianchi@example.com", "agent")
    ase_id = zendesk.add_user("Giulia Verdi", "giulia.verdi@example.com", "agent")
    organization_id = zendesk.add_organization(
        "Acme Corp",
        fields={
            "account_manager": "marco.bianchi@example.com",
            "ase": "giulia.verdi@example.com",
            "support_tier": "enterprise",
        },
        tags=["enterprise", "emea"],
        domain_names=["acme.example.com"],
    )
    return Account(
        # The API user exists from the start: the sandbox authenticates it.
        admin_id=zendesk.api_user_id,
        agent_id=zendesk.add_user("Francesca Rossi", "francesca@example.com", "agent"),
        account_manager_id=account_manager_id,
        ase_id=ase_id,
        organization_id=organization_id,
        requester_id=zendesk.add_user(
            "Jordan Lee", "jordan.lee@acme.example.com", "end-user", organization_id
        ),
        cc_id=zendesk.add_user(
            "Priya Natarajan", "priya.natarajan@acme.example.com", "end-user", organization_id
        ),
        view_id=_add_urgent_view(sandbox),
        second_agent_id=zendesk.add_user("Ravi Patel", "ravi.patel@example.com", "agent"),
        **_seed_slack(sandbox),
        **_pagerduty_ids(team := _seed_pagerduty(sandbox)),
        pd_team=team,
        gitlab_project=_seed_gitlab(sandbox),
    )


def _seed_gitlab(sandbox: Sandbox) -> str:
    sandbox.gitlab.add_project(GITLAB_PROJECT, {GITLAB_TEMPLATE: RUNBOOK_TEMPLATE})
    return GITLAB_PROJECT


def _seed_pagerduty(sandbox: Sandbox) -> SupportTeam:
    return sandbox.pagerduty.seed_support_team(
        engineers=[("Francesca Rossi", "francesca@example.com"),
                   ("Ravi Patel", "ravi.patel@example.com")],
        managers=[("Alex Morgan", "alex.morgan@example.com")],
        bot=("Emergency Automation", sandbox.email))


def _pagerduty_ids(team: SupportTeam) -> dict[str, str]:
    return {
        "pd_service_id": team.customer_support_service_id,
        "pd_policy_id": team.customer_support_policy_id,
        "pd_managers_service_id": team.support_managers_service_id,
        "pd_francesca_id": team.engineer_ids[0],
        "pd_ravi_id": team.engineer_ids[1],
        "pd_manager_id": team.manager_ids[0],
    }


def _seed_slack(sandbox: Sandbox) -> dict[str, str]:
    slack = sandbox.slack
    return {
        "self_managed_channel": slack.add_channel("support_self-managed"),
        "saas_channel": slack.add_channel("support_gitlab-com"),
        "slack_manager_id": slack.add_user("Marco Bianchi", "marco.bianchi@example.com"),
        "slack_ase_id": slack.add_user("Giulia Verdi", "giulia.verdi@example.com"),
        "slack_agent_id": slack.add_user("Francesca Rossi", "francesca@example.com"),
        "americas_group_id": slack.add_usergroup("support-team-americas", "Support Americas"),
    }


def _add_urgent_view(sandbox: Sandbox) -> int:
    sandbox.zendesk.add_view(URGENT_VIEW_ID, URGENT_VIEW_QUERY, title="Urgent unsolved tickets")
    return URGENT_VIEW_ID


def sandbox_environ(sandbox: Sandbox) -> dict[str, str]:
    """The tokens the sandbox accepts, as the CLI reads them from the environment."""
    return {"ZENDESK_API_TOKEN": sandbox.token,
            "PAGERDUTY_API_TOKEN": sandbox.pagerduty.token,
            "SLACK_BOT_TOKEN": sandbox.slack.token,
            "GITLAB_TOKEN": sandbox.gitlab.token}


def sandbox_config(sandbox: Sandbox, account: Account | None, state_path: Path, *,
                   workflow: WorkflowConfig | None = None, slack: bool | SlackConfig = True,
                   pagerduty: bool | PagerDutyConfig = True,
                   gitlab: bool | GitLabConfig = False) -> Config:
    """A config.toml's worth of settings pointing at the sandbox's three services.

    ``slack``/``pagerduty``: False leaves the section out, a config object replaces the
    default one (its urls are pointed at the sandbox); ``gitlab``: True adds the seeded
    project's section.
    """
    slack_config = None
    if slack is not False:
        slack_config = replace(
            slack if isinstance(slack, SlackConfig)
            else SlackConfig(default_channel=_account(account).self_managed_channel),
            url=sandbox.slack_url)
    pagerduty_config = None
    if pagerduty is not False:
        pagerduty_config = replace(
            pagerduty if isinstance(pagerduty, PagerDutyConfig) else _pagerduty_config(
                sandbox, account),
            url=sandbox.pagerduty_url, ca_file=Path(sandbox.pagerduty_ca))
    gitlab_config = None
    if gitlab is not False:
        gitlab_config = replace(
            gitlab if isinstance(gitlab, GitLabConfig) else GitLabConfig(
                url="", project=_account(account).gitlab_project,
                template=_account(account).gitlab_template, labels=("emergency",)),
            url=sandbox.gitlab_url)
    return Config(
        source=state_path.parent / "sandbox.toml",
        zendesk=ZendeskConfig(url=sandbox.url, email=sandbox.email, timeout_seconds=5),
        workflow=workflow or WorkflowConfig(bridge_url="https://bridge.example.com/team"),
        state_path=state_path, slack=slack_config, pagerduty=pagerduty_config,
        gitlab=gitlab_config)


def _account(account: Account | None) -> Account:
    if account is None:
        raise ValueError("the default Slack and PagerDuty sections need the seeded account")
    return account


def _pagerduty_config(sandbox: Sandbox, account: Account | None) -> PagerDutyConfig:
    account = _account(account)
    return PagerDutyConfig(from_email=sandbox.email, service_id=account.pd_service_id,
                           escalation_policy_id=account.pd_policy_id,
                           managers_service_id=account.pd_managers_service_id)
