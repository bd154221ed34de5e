"""Plain-text notification emails over SMTP."""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Sequence
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr


def send(
    host: str,
    port: int,
    sender: str,
    recipients: Sequence[str],
    subject: str,
    body: str,
    *,
    starttls: bool = False,
    username: str | None = None,
    password: str | None = None,
    timeout: float = 10,
) -> None:
    """Send one text message to ``recipients``; raises ``smtplib.SMTPException`` or
    ``OSError`` when the server cannot be reached or refuses it."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = ", ".join(recipients)
    msg["Subject"] = subject
    msg["Date"] = formatdate(localtime=False)
    domain = parseaddr(sender)[1].rpartition("@")[2] or "jobyard.invalid"
    msg["Message-ID"] = make_msgid(domain=domain)
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(body)
    with smtplib.SMTP(host, port, timeout=timeout) as smtp:
        if starttls:
            smtp.starttls(context=ssl.create_default_context())
        if username:
            smtp.login(username, password or "")
        smtp.send_message(msg, from_addr=sender, to_addrs=list(recipients))
