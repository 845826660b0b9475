"""The one signature scheme of every webhook, inbound and outbound: HMAC-SHA256 of
"<unix seconds>." + body, sent as `X-Parley-Signature: t=<unix seconds>,v1=<hex>`.

    headers = signed_headers(secret, body)              # what Parley sends
    problem = signature_problem(secret, body, header)   # None when `header` signs `body`
    same_secret(expected, given)                        # every comparison of secrets

docs/webhooks.md documents it for integrators, with a verification example.
"""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "X-Parley-Signature"
SIGNATURE_TOLERANCE = 300  # seconds either side of now


def same_secret(expected: str, given: str) -> bool:
    """Whether `given` is `expected`, in constant time. Compared as UTF-8 bytes:
    hmac.compare_digest raises TypeError for text with non-ASCII characters, which would
    turn a stranger's odd value into an HTTP 500 instead of a refusal. (surrogatepass: a
    lone surrogate, which JSON can carry, encodes too.)

    >>> same_secret("c0ffee", "c0ffee"), same_secret("c0ffee", "cöffee"), same_secret("c0ffee", "\\ud800")
    (True, False, False)
    """
    return hmac.compare_digest(expected.encode("utf-8", "surrogatepass"), given.encode("utf-8", "surrogatepass"))


def signature(secret: str, body: bytes, timestamp: int) -> str:
    """The X-Parley-Signature value for `body` sent at `timestamp` (unix seconds).

    >>> signature("s3cret", b'{"text":"hi"}', 1767225600)
    't=1767225600,v1=14c9d6c051268444b047dbc0897b6b69ebe72ebbc5c8c3ede7e64c8104055950'
    """
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def signed_headers(secret: str, body: bytes, at: float | None = None) -> dict[str, str]:
    """Headers of a signed JSON post, signed now (or at `at`)."""
    stamp = int(time.time() if at is None else at)
    return {"content-type": "application/json", SIGNATURE_HEADER: signature(secret, body, stamp)}


def signature_problem(secret: str, body: bytes, header: str | None, at: float | None = None) -> str | None:
    """Why `header` does not sign `body` with `secret` now, or None when it does.

    Several v1= entries may be given (a sender mid-way through a secret rotation); one
    matching is enough. Comparisons take constant time.
    """
    if not header:
        return f"{SIGNATURE_HEADER} is missing."
    timestamp, candidates = _parse(header)
    if timestamp is None or not candidates:
        return f"{SIGNATURE_HEADER} must look like t=<unix seconds>,v1=<hex HMAC-SHA256>."
    if abs((time.time() if at is None else at) - timestamp) > SIGNATURE_TOLERANCE:
        return f"{SIGNATURE_HEADER} is too old (or too far in the future): sign each delivery when you send it."
    expected = signature(secret, body, timestamp).partition(",v1=")[2]
    # No short cut: every candidate is compared, in constant time each.
    matched = False
    for candidate in candidates:
        matched |= same_secret(expected, candidate)
    return None if matched else f"{SIGNATURE_HEADER} does not match the body and the secret."


def signed_at(header: str) -> int | None:
    """The unix time a header says it was signed at (checked by signature_problem).

    >>> signed_at("t=1767225600,v1=14c9d6c0")
    1767225600
    """
    return _parse(header)[0]


def _parse(header: str) -> tuple[int | None, list[str]]:
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name == "t" and value.isdigit() and len(value) <= 12:
            timestamp = int(value)
        elif name == "v1":
            candidates.append(value.strip().lower())
    return timestamp, candidates


def link_signature(secret: str, subject: str, expires: int) -> str:
    """The signature of a bearer link to `subject` ("attachment:7:12") that works until
    `expires` (unix seconds): `signature`'s HMAC over the subject, stamped with the expiry.

    >>> link_signature("s3cret", "attachment:7:12", 1767225600)[:16]
    'a31d2f93fde8ceb2'
    """
    return signature(secret, subject.encode(), expires).partition(",v1=")[2]


def link_valid(secret: str, subject: str, expires: int, given: str, at: float | None = None) -> bool:
    """Whether `given` signs a link to `subject` until `expires`, and that time has not come."""
    return (
        same_secret(link_signature(secret, subject, expires), given) and (time.time() if at is None else at) < expires
    )
