"""emergency-automation: a support team's customer-emergency workflow on Zendesk."""

__version__ = "0.1.0"
