"""Mail addresses are checked at submission with the code that sends them."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from pydantic import ValidationError

from acjob.address import check_mail_address
from acjob.config import MailConfig
from acjob.delivery.mail import MailChannel
from acjob.errors import PermanentError
from acjob.model import DeliveryRecord, Job, JobSpec, MailDelivery, State
from acjob.spool import Spool
from tests.conftest import free_port

GOOD = ["a@x.com", "first.last+tag@sub.example.org", "o'brien@x.com", "a%b@x.com",
        "user@localhost", "a_b-c@x-y.example", "x@x.co"]

BAD = [
    "=?utf-8?q?a=0ABcc:=20evil?=@x.com",  # an encoded word that decodes to a new header
    "=?utf-8?q?abc?=@x.com",  # any encoded word
    "a\u0000b@x.com",  # NUL, which went into RCPT TO
    "a\rb@x.com", "a\nb@x.com", "a\tb@x.com", "a\x7fb@x.com", "a\x1bb@x.com",
    "\u00e9@x.com",  # 8-bit text: written as an encoded word, needs SMTPUTF8
    "a(comment)@x.com",  # the comment is dropped on the way
    '"a.b"@x.com',  # needless quotes are dropped on the way
    "a..b@x.com", ".a@x.com", "a.@x.com", "a@x..com", "a@x.com.",
    "a:b@x.com", "a\\b@x.com", "a[b@x.com", '"a@x.com',
]


@pytest.mark.parametrize("address", GOOD)
def test_sendable_addresses_are_accepted_unchanged(address: str) -> None:
    assert check_mail_address(address) == address
    assert MailDelivery(to=address).to == address


@pytest.mark.parametrize("address", BAD)
def test_addresses_that_cannot_be_sent_as_given_are_refused(address: str) -> None:
    with pytest.raises(ValueError):
        check_mail_address(address)
    with pytest.raises(ValidationError) as info:
        MailDelivery(to=address)
    assert info.value.errors()[0]["loc"] == ("to",)


@pytest.mark.parametrize("address", ["=?utf-8?q?a=0ABcc:=20evil?=@x.com", "a\u0000b@x.com"])
def test_the_mail_channel_fails_such_an_address_for_good(tmp_path: Path, address: str) -> None:
    # As if stored before addresses were checked: a permanent failure, not an internal
    # error (or an unreachable server) retried until the deadline.
    job = Job(id="a" * 26, spec=JobSpec(command="true"), state=State.COMPLETE,
              backend="local", created_at=0.0, updated_at=0.0, seq=1, exit_code=0)
    delivery = DeliveryRecord(id="d1", job_id=job.id, kind="email", target=address,
                              state="pending", attempts=0, created_at=0.0, next_at=0.0,
                              sent_at=None, last_error=None)
    channel = MailChannel(Spool(tmp_path / "spool"),
                          MailConfig(host="127.0.0.1", port=free_port(), timeout=5))
    with pytest.raises(PermanentError, match="cannot mail to"):
        asyncio.run(channel.send(delivery, job))
