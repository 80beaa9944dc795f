"""Which SMTP refusals are hard bounces: the recipient's mailbox, not the message."""

from __future__ import annotations

import pytest

from service.mail.transport import PermanentFailure, Stage, enhanced_status


@pytest.mark.parametrize(
    ("reply", "stage", "hard"),
    [
        ("550 5.1.1 <x@example.org>: Recipient address rejected: User unknown", "rcpt", True),
        ("550 5.1.10 RESOLVER.ADR.RecipientNotFound", "rcpt", True),
        ("553 5.1.3 Bad recipient address syntax", "rcpt", True),
        ("550 5.2.1 The email account that you tried to reach is disabled", "rcpt", True),
        ("550 No such user here", "rcpt", True),
        ("551 User not local", "rcpt", True),
        ("553 Mailbox name not allowed", "rcpt", True),
        ("550 5.0.0 Rejected", "rcpt", True),  # x.0.0 says nothing: the basic code decides
        # Policy, quota and content refusals say nothing about the mailbox.
        ("550 5.7.1 Service unavailable, client host blocked", "rcpt", False),
        ("552 5.2.2 Mailbox full", "rcpt", False),
        ("554 5.7.1 Message rejected as spam", "rcpt", False),
        ("554 Transaction failed", "rcpt", False),
        ("552 Message size exceeds fixed maximum", "rcpt", False),
        # Refusals of the sender or of the message never name the recipient.
        ("550 5.1.1 Unknown user", "data", False),
        ("554 5.7.1 Content refused", "data", False),
        ("553 5.1.8 Sender address rejected", "mail", False),
    ],
)
def test_only_mailbox_errors_at_rcpt_are_hard_bounces(reply: str, stage: Stage, hard: bool) -> None:
    failure = PermanentFailure(reply, int(reply[:3]), stage)
    assert failure.hard_bounce is hard


def test_enhanced_status_is_read_after_the_basic_code() -> None:
    assert enhanced_status("550 5.1.1 User unknown") == (5, 1, 1)
    assert enhanced_status("451 4.7.1 Greylisted") == (4, 7, 1)
    assert enhanced_status("550 User 5.1.1 unknown") is None
    assert enhanced_status("550 5.1.1.2 oops") is None
    assert enhanced_status("") is None
