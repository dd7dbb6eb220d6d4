"""Mail a final job's result: status in the subject and headers, output attached.

The job's stdout travels as an attachment named ``stdout`` (base64, so binary output
survives any mail path byte for byte), its stderr as ``stderr``. Output larger than
``[mail] max_attachment_bytes`` is not attached: the message says how to fetch it
with ``acpoll``. :func:`extract_stdout` gets the bytes back from a saved message
(``acpoll --from-mail``).
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from dataclasses import dataclass
from email import message_from_binary_file, policy
from email.message import EmailMessage
from typing import BinaryIO

from ..address import MAIL_POLICY, check_mail_address
from ..config import MailConfig
from ..errors import InvalidRequest, PermanentError, TransientError
from ..model import DeliveryRecord, Job, State
from ..spool import Spool, Stream
from .base import output_file_size, read_output

#: Headers that carry the result in machine-readable form.
JOB_HEADER = "X-Acjob-Job"
STATE_HEADER = "X-Acjob-State"
EXIT_HEADER = "X-Acjob-Exit-Status"
FAILURE_HEADER = "X-Acjob-Failure"
DELIVERY_HEADER = "X-Acjob-Delivery"


def build_message(delivery: DeliveryRecord, job: Job, spool: Spool,
                  config: MailConfig) -> EmailMessage:
    """Return the message for one delivery (pure but for reading the output files)."""
    ok = job.state is State.COMPLETE
    status = "" if job.exit_code is None else f", exit status {job.exit_code}"
    msg = EmailMessage(policy=MAIL_POLICY)
    msg["From"] = config.sender
    msg["To"] = delivery.target
    msg["Subject"] = (f"acjob job {job.id} {'succeeded' if ok else 'failed'} "
                      f"({job.state.value}{status})")
    msg["Message-ID"] = f"<{delivery.id}@acjob>"
    msg[JOB_HEADER] = job.id
    msg[STATE_HEADER] = job.state.value
    msg[EXIT_HEADER] = "" if job.exit_code is None else str(job.exit_code)
    msg[FAILURE_HEADER] = job.failure.value if job.failure else ""
    msg[DELIVERY_HEADER] = delivery.id
    command = job.spec.command if isinstance(job.spec.command, str) else " ".join(
        job.spec.command)
    lines = [f"Job {job.id} ended: {job.state.value}{status}.", f"Command: {command}"]
    if job.reason:
        lines.append(f"Reason: {job.reason}")
    attach: list[tuple[str, bytes]] = []
    streams: tuple[Stream, ...] = ("stdout", "stderr")
    for stream in streams:
        size = output_file_size(spool, job, stream)
        if size > config.max_attachment_bytes:
            lines.append(f"Its {stream} ({size} bytes) is too large to mail; fetch it with:"
                         f"  acpoll {'--no-stderr ' if stream == 'stdout' else ''}{job.id}")
        else:
            attach.append((stream, read_output(spool, job, stream)))
            lines.append(f"Its {stream} ({size} bytes) is attached as '{stream}'.")
    lines.append("Extract stdout from this message with:  acpoll --from-mail < message.eml")
    msg.set_content("\n".join(lines) + "\n")
    for name, data in attach:
        msg.add_attachment(data, maintype="application", subtype="octet-stream",
                           filename=name)
    return msg


class MailChannel:
    """Sends result messages through the ``[mail]`` SMTP server."""

    kind = "email"

    def __init__(self, spool: Spool, config: MailConfig) -> None:
        self._spool = spool
        self._config = config

    async def send(self, delivery: DeliveryRecord, job: Job) -> None:
        """Build the message and hand it to the SMTP server (in a worker thread).

        Raises:
            PermanentError: the address cannot be sent to (an address accepted before
                submissions were checked), or the server refused it for good.
            TransientError: the server is unreachable or deferred the message.
        """
        try:
            check_mail_address(delivery.target)
        except ValueError as exc:
            raise PermanentError(f"cannot mail to {delivery.target[:320]!r}: {exc}") from exc
        msg = build_message(delivery, job, self._spool, self._config)
        await asyncio.to_thread(self._send, msg)

    def _send(self, msg: EmailMessage) -> None:
        cfg = self._config
        try:
            if cfg.security == "tls":
                smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                    cfg.host, cfg.port or 465, timeout=cfg.timeout,
                    context=ssl.create_default_context())
            else:
                smtp = smtplib.SMTP(cfg.host, cfg.port or (587 if cfg.security == "starttls"
                                                            else 25), timeout=cfg.timeout)
            with smtp:
                if cfg.security == "starttls":
                    smtp.starttls(context=ssl.create_default_context())
                if cfg.user:
                    smtp.login(cfg.user, cfg.password or "")
                smtp.send_message(msg)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            if codes and all(500 <= c < 600 for c in codes):
                raise PermanentError(f"the mail server refused {msg['To']}: {codes}") from exc
            raise TransientError(f"the mail server deferred {msg['To']}: {codes}") from exc
        except smtplib.SMTPResponseException as exc:
            # 5xx is final, except authentication, which an operator can still fix.
            if 500 <= exc.smtp_code < 600 and exc.smtp_code not in (530, 534, 535):
                raise PermanentError(f"the mail server said {exc.smtp_code}") from exc
            raise TransientError(f"the mail server said {exc.smtp_code}") from exc
        except (OSError, smtplib.SMTPException) as exc:
            raise TransientError(f"cannot reach the mail server {cfg.host}: {exc}") from exc
        except ValueError as exc:
            # The message itself cannot be written out (smtplib's own checks): sending
            # it again changes nothing.
            raise PermanentError(f"the message to {msg['To']} cannot be sent: {exc}") from exc


@dataclass(frozen=True, slots=True)
class SavedResult:
    """What a saved result message tells of its job.

    Attributes:
        stdout: The job's stdout, or ``None`` if the message did not carry it (too
            large to mail).
        job_id: The job's id.
        exit_status: The command's exit status, if it has one.
        state: The job's final state.
        failure: Why it failed (``timeout``, ``exit``, …), if it did; ``None`` from a
            message of a version that did not say.
    """

    stdout: bytes | None
    job_id: str
    exit_status: int | None
    state: str
    failure: str | None


def extract_stdout(source: BinaryIO) -> SavedResult:
    """Read a saved result message.

    Raises:
        InvalidRequest: this is not an acjob result message.
    """
    msg = message_from_binary_file(source, policy=policy.default)
    job_id = msg.get(JOB_HEADER)
    if job_id is None:
        raise InvalidRequest("this is not an acjob result message (no X-Acjob-Job header)",
                             hint="save the whole message, headers included (.eml)")
    exit_text = str(msg.get(EXIT_HEADER, "")).strip()
    exit_status = int(exit_text) if exit_text.isdigit() else None
    stdout = None
    for part in msg.walk():
        if part.get_filename() == "stdout":
            payload = part.get_payload(decode=True)
            stdout = payload if isinstance(payload, bytes) else b""
    failure = str(msg.get(FAILURE_HEADER, "")).strip() or None
    return SavedResult(stdout, str(job_id), exit_status, str(msg.get(STATE_HEADER, "")),
                       failure)
