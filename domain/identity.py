"""Identity verification, as Intercom does it: the customer's server signs the contact's
external id with the channel secret, and the widget or SDK sends that hash along.

    >>> h = user_hash("s3cret", "user-42")
    >>> verify_user_hash("s3cret", "user-42", h), verify_user_hash("s3cret", "user-42", "é" * 64)
    (True, False)
"""

from __future__ import annotations

import hashlib
import hmac

from core.signing import same_secret


def user_hash(secret: str, external_id: str) -> str:
    return hmac.new(secret.encode(), external_id.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()


def verify_user_hash(secret: str, external_id: str, candidate: str | None) -> bool:
    if not candidate:
        return False
    return same_secret(user_hash(secret, external_id), candidate.strip().lower())


# External ids the system gives contacts of channels with ids of their own (messenger);
# no session or client may claim one.
MESSENGER_PREFIX = "messenger:"
