"""Outbound e-mail over SMTP, with the server from the settings (SMTP_HOST, SMTP_PORT, …).

    message_id = await send_mail(Mail(to=["ada@example.com"], subject="New reply", text="Hi Ada,\\n…"))
    # '<173...@parley.localhost>': keep it to thread the replies (in_reply_to=, references=)

Every caller-supplied header (subject, addresses, Message-IDs, extra headers) is checked
for line breaks first, so no value can add a header or end the header block.
"""

from __future__ import annotations

import email.utils
import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage

import aiosmtplib

from core.config import settings

log = logging.getLogger("parley.mail")

# Line breaks of any kind (str.splitlines() splits on all of these) and other control
# characters, which have no business in a header.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f\x85\u2028\u2029]")
# RFC 5322 field names: printable US-ASCII except the colon.
_FIELD_NAME = re.compile(r"[!-9;-~]+")
# Headers send_mail writes itself; `headers=` may not replace them.
_MANAGED = frozenset(
    name.lower()
    for name in (
        "From",
        "To",
        "Cc",
        "Bcc",
        "Reply-To",
        "Sender",
        "Subject",
        "Date",
        "Message-ID",
        "In-Reply-To",
        "References",
        "MIME-Version",
        "Content-Type",
        "Content-Transfer-Encoding",
        "Content-Disposition",
    )
)


class MailNotConfigured(Exception):
    """SMTP_HOST is not set, so this deployment cannot send mail."""


class MailError(Exception):
    """The SMTP server could not be reached, or refused the message."""


@dataclass(frozen=True, kw_only=True)
class Mail:
    """A plain-text UTF-8 message: `from_addr` defaults to MAIL_FROM; `in_reply_to` and
    `references` thread it under earlier Message-IDs; `headers` adds others (not those
    send_mail writes itself)."""

    to: list[str]
    subject: str
    text: str
    from_addr: str | None = None
    reply_to: str | None = None
    in_reply_to: str | None = None
    references: list[str] | None = None
    headers: dict[str, str] | None = None


async def send_mail(mail: Mail) -> str:
    """Send a plain-text UTF-8 message and return its Message-ID (with the angle brackets).

    Raises ValueError (naming the field) for a header value with a line break or an
    address that is not exactly one mailbox, MailNotConfigured when SMTP_HOST is unset,
    and MailError when the server cannot be reached or refuses the message. Recipients
    refused while others were accepted are logged, not raised: the message went out, and
    a retry would send it twice to the others.
    """
    message, sender, recipients = build_message(mail)
    if not settings.smtp_host:
        raise MailNotConfigured("outbound mail is disabled: set SMTP_HOST to send mail")
    host, port = settings.smtp_host, settings.smtp_port
    message_id = message["Message-ID"]
    try:
        refused, _ = await aiosmtplib.send(
            message,
            sender=sender,
            recipients=recipients,
            hostname=host,
            port=port,
            username=settings.smtp_username or None,  # SMTP_USERNAME= (empty): no login
            password=settings.smtp_password,
            use_tls=settings.smtp_tls == "tls",
            start_tls=settings.smtp_tls == "starttls",
            timeout=settings.smtp_timeout_seconds,
            # Without it aiosmtplib asks socket.getfqdn(), a reverse DNS lookup that can
            # take seconds; the sending domain is what the EHLO should name anyway.
            local_hostname=sender.rpartition("@")[2],
        )
    except (aiosmtplib.SMTPException, OSError) as exc:
        raise MailError(f"could not send mail through {host}:{port}: {exc}") from exc
    if refused:
        log.warning("mail %s: %s refused %s", message_id, host, ", ".join(sorted(refused)))
    log.info("mail %s sent to %d recipient(s) through %s", message_id, len(recipients) - len(refused), host)
    return str(message_id)


def build_message(mail: Mail) -> tuple[EmailMessage, str, list[str]]:
    """The message send_mail would send, with its envelope sender and recipients."""
    from_header = mail.from_addr if mail.from_addr is not None else settings.mail_from
    sender = _mailbox("from_addr", from_header)
    if not mail.to:
        raise ValueError("to: at least one recipient is required")
    recipients = [_mailbox("to", address) for address in mail.to]

    message = EmailMessage()
    message["From"] = from_header
    message["To"] = ", ".join(mail.to)
    message["Subject"] = _header_value("subject", mail.subject)
    message["Date"] = email.utils.format_datetime(datetime.now(UTC))
    message["Message-ID"] = email.utils.make_msgid(domain=sender.rpartition("@")[2])
    if mail.reply_to is not None:
        _mailbox("reply_to", mail.reply_to)
        message["Reply-To"] = mail.reply_to
    if mail.in_reply_to is not None:
        message["In-Reply-To"] = _header_value("in_reply_to", mail.in_reply_to)
    if mail.references:
        message["References"] = " ".join(_header_value("references", ref) for ref in mail.references)
    for name, value in (mail.headers or {}).items():
        if not _FIELD_NAME.fullmatch(name):
            raise ValueError(f"headers: {name!r} is not a valid header name")
        if name.lower() in _MANAGED:
            raise ValueError(f"headers: {name} is set by send_mail; use its own argument")
        message[name] = _header_value(f"headers[{name!r}]", value)
    message.set_content(mail.text, charset="utf-8")
    return message, sender, recipients


def _header_value(field: str, value: str) -> str:
    if _CONTROL.search(value):
        raise ValueError(f"{field}: line breaks and control characters are not allowed")
    return value


def _mailbox(field: str, value: str) -> str:
    """The addr-spec of a single mailbox ('Ada <ada@example.com>' → 'ada@example.com')."""
    _header_value(field, value)
    parsed = email.utils.getaddresses([value])
    if len(parsed) != 1 or "@" not in parsed[0][1] or re.search(r'[\s<>"]', parsed[0][1]):
        raise ValueError(f"{field}: {value!r} is not a single e-mail address")
    return parsed[0][1]
