"""core/signing.py: the one X-Parley-Signature scheme, inbound and outbound."""

from __future__ import annotations

import time

from core.signing import SIGNATURE_HEADER, signature, signature_problem, signed_headers

BODY = b'{"text":"hi"}'


def test_the_documented_vector() -> None:
    assert (
        signature("s3cret", BODY, 1767225600)
        == "t=1767225600,v1=14c9d6c051268444b047dbc0897b6b69ebe72ebbc5c8c3ede7e64c8104055950"
    )


def test_a_fresh_signature_verifies_and_anything_else_says_why() -> None:
    header = signed_headers("s3cret", BODY)[SIGNATURE_HEADER]
    assert signature_problem("s3cret", BODY, header) is None
    assert "does not match" in (signature_problem("other", BODY, header) or "")
    assert "does not match" in (signature_problem("s3cret", BODY + b" ", header) or "")
    assert "is missing" in (signature_problem("s3cret", BODY, None) or "")
    assert "must look like" in (signature_problem("s3cret", BODY, "v1=abc") or "")
    old = signature("s3cret", BODY, int(time.time()) - 301)
    assert "too old" in (signature_problem("s3cret", BODY, old) or "")
    assert "does not match" in (signature_problem("s3cret", BODY, header.replace("v1=", "v1=é")) or "")


def test_during_a_rotation_one_matching_signature_is_enough() -> None:
    now = int(time.time())
    both = f"{signature('old', BODY, now)},v1={signature('new', BODY, now).partition(',v1=')[2]}"
    assert signature_problem("new", BODY, both) is None
    assert signature_problem("old", BODY, both) is None
