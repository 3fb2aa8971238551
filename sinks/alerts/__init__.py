"""Alert delivery: the alerts topic -> durable outbox -> clinics' webhooks and e-mail.

See :mod:`sinks.alerts.service` for the flow, :mod:`sinks.alerts.channels` for the
channels file, :mod:`sinks.alerts.webhook` for the signature scheme a clinic verifies,
:mod:`sinks.alerts.messages` for what a clinic receives, and :mod:`sinks.alerts.outbox`
for durability and suppression.
"""

from sinks.alerts.base import Outcome
from sinks.alerts.channels import (
    ChannelConfig,
    ChannelConfigError,
    EmailRecipient,
    SmtpServer,
    Webhook,
    load_channels,
    parse_channels,
)
from sinks.alerts.mail import SmtpSender, build_message
from sinks.alerts.messages import alert_body, email_subject, email_text, group_body
from sinks.alerts.outbox import IngestReport, Job, Outbox, OutboxLocked
from sinks.alerts.service import AlertService, build_consumer, parse_alert, run_alert_service
from sinks.alerts.webhook import (
    HEADER_ALERT_ID,
    HEADER_SIGNATURE,
    HEADER_TIMESTAMP,
    WebhookSender,
    sign,
    verify_signature,
)

__all__ = [
    "HEADER_ALERT_ID",
    "HEADER_SIGNATURE",
    "HEADER_TIMESTAMP",
    "AlertService",
    "ChannelConfig",
    "ChannelConfigError",
    "EmailRecipient",
    "IngestReport",
    "Job",
    "Outbox",
    "OutboxLocked",
    "Outcome",
    "SmtpSender",
    "SmtpServer",
    "Webhook",
    "WebhookSender",
    "alert_body",
    "build_consumer",
    "build_message",
    "email_subject",
    "email_text",
    "group_body",
    "load_channels",
    "parse_alert",
    "parse_channels",
    "run_alert_service",
    "sign",
    "verify_signature",
]
