"""Email through the installation's SMTP server (settings `smtp_*`), with aiosmtplib."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import make_msgid

import aiosmtplib

from app.settings import Settings

log = logging.getLogger("pulsegraph.notifications")


@dataclass(frozen=True, slots=True)
class MailResult:
    """What the server answered: its reply code and text, or the error that stopped the send."""

    code: int | None
    reply: str | None
    error: str | None

    @property
    def sent(self) -> bool:
        return self.error is None


def mail_configured(settings: Settings) -> bool:
    return bool(settings.smtp_host)


def message(settings: Settings, *, to: Sequence[str], subject: str, body: str, message_id: str | None = None) -> EmailMessage:
    mail = EmailMessage()
    mail["From"] = settings.smtp_from
    mail["To"] = ", ".join(to)
    mail["Subject"] = subject
    mail["Message-ID"] = f"<{message_id}@pulsegraph>" if message_id else make_msgid(domain="pulsegraph")
    mail.set_content(body)
    return mail


async def send_mail(settings: Settings, mail: EmailMessage) -> MailResult:
    """One message, refused or accepted by the server as a whole."""
    if not settings.smtp_host:
        return MailResult(None, None, "no SMTP server is configured")
    try:
        errors, reply = await aiosmtplib.send(
            mail,
            hostname=settings.smtp_host,
            port=settings.smtp_port,
            username=settings.smtp_username,
            password=settings.smtp_password,
            use_tls=settings.smtp_tls,
            start_tls=settings.smtp_starttls and not settings.smtp_tls,
            timeout=settings.notification_timeout_seconds,
        )
    except aiosmtplib.SMTPResponseException as exc:
        return MailResult(exc.code, exc.message, f"SMTP {exc.code}: {exc.message}")
    except (aiosmtplib.SMTPException, OSError) as exc:
        return MailResult(None, None, f"{type(exc).__name__}: {exc}")
    if errors:
        refused = ", ".join(f"{address} ({response.code})" for address, response in errors.items())
        return MailResult(250, reply, f"recipients refused: {refused}")
    return MailResult(250, reply, None)


async def send_direct(settings: Settings, *, to: str, subject: str, body: str) -> bool:
    """A message to one person (an invitation, a password reset): True once the server took it."""
    if not mail_configured(settings):
        return False
    result = await send_mail(settings, message(settings, to=[to], subject=subject, body=body))
    if not result.sent:
        log.warning("mail to a member was not sent: %s", result.error)
    return result.sent
