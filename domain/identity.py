"""Identity verification, as Intercom does it: the customer's server signs the contact's
external id with the channel secret, and the widget or SDK sends that hash along.

    >>> h = user_hash("s3cret", "user-42")
    >>> verify_user_hash("s3cret", "user-42", h)
    True
"""

from __future__ import annotations

import hashlib
import hmac


def user_hash(secret: str, external_id: str) -> str:
    return hmac.new(secret.encode(), external_id.encode(), hashlib.sha256).hexdigest()


def verify_user_hash(secret: str, external_id: str, candidate: str | None) -> bool:
    if not candidate:
        return False
    return hmac.compare_digest(user_hash(secret, external_id), candidate.strip().lower())


# External ids the system gives contacts of channels with ids of their own (messenger);
# no session or client may claim one.
MESSENGER_PREFIX = "messenger:"
