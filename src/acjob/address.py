"""Mail addresses: checked at submission with the very code that will send them.

A result message is built with :data:`MAIL_POLICY` and handed to :mod:`smtplib`,
which takes its ``RCPT TO`` addresses from the ``To`` header. An address is accepted
only if that path carries it unchanged: one bare ``local@domain`` of printable
ASCII, which the header parser reads without a defect, with no encoded word and no
comment, which the header writes back byte for byte, and which ``smtplib`` would
send as the same recipient. So an accepted address can always be sent, and nothing
in it can add a header or a recipient.
"""

from __future__ import annotations

import re
from email import policy
from email.errors import MessageError
from email.message import EmailMessage
from email.utils import getaddresses

#: The policy of every result message: SMTP line ends, lines up to RFC 5322's 998
#: characters (a subject is never folded before its first word).
MAIL_POLICY = policy.SMTP.clone(max_line_length=998)

#: Printable ASCII, no space: no control character, no NUL, no 8-bit text (which
#: would need SMTPUTF8, and is written as an encoded word in a header).
_PRINTABLE = re.compile(r"[\x21-\x7e]+")


def check_mail_address(address: str) -> str:
    """Return ``address`` if a result message can be sent to it as it is.

    Raises:
        ValueError: with a message naming what is wrong: a control character, a
            space or non-ASCII text, an encoded word (``=?…?=``), a display name, a
            comment, several addresses, a defect the header parser finds, or any
            other change on the way into the message and out to ``RCPT TO``.
    """
    if not _PRINTABLE.fullmatch(address):
        raise ValueError("a mail address is printable ASCII without spaces or control "
                         "characters")
    if "=?" in address:
        raise ValueError("a mail address cannot hold an encoded word (=?...?=)")
    msg = EmailMessage(policy=MAIL_POLICY)
    try:
        msg["To"] = address
        header = msg["To"]
        addresses = header.addresses
        written = msg.as_bytes()
    except (ValueError, TypeError, MessageError) as exc:
        raise ValueError(f"not a mail address: {exc}") from exc
    if len(addresses) != 1 or header.defects:
        raise ValueError("not a single, well-formed mail address")
    parsed = addresses[0]
    if parsed.display_name:
        raise ValueError("a mail address is a bare local@domain, without a name")
    if parsed.addr_spec != address:
        raise ValueError("a mail address would change on its way into the message (a "
                         "comment, brackets or needless quotes)")
    if written != f"To: {address}\r\n\r\n".encode():
        raise ValueError("not a mail address that a header carries unchanged")
    if getaddresses([address]) != [("", address)]:
        raise ValueError("not a mail address that is sent unchanged")
    return address
