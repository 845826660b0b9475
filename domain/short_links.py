"""Finding the links of an outbound text and the codes that stand for them, as plain
functions (services/short_links.py mints and stores them).

    >>> [link.url for link in find_links("Sale! https://shop.example/s?x=1, ends Sunday.")]
    ['https://shop.example/s?x=1']
    >>> rewrite("See https://a.example/x.", find_links("See https://a.example/x."), ["https://p.example/l/abc"])
    'See https://p.example/l/abc.'
    >>> valid_code("Zm9vYmFyYmF6cXV4"), valid_code("../../etc"), valid_code("short")
    (True, False, False)
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from urllib.parse import urlsplit

# Linear time: one character class, no nesting. Trailing punctuation is the sentence's.
_LINK = re.compile(r"https?://[^\s<>\"'`]+", re.IGNORECASE)
_TRAILING = ".,;:!?)]}'\""
CODE_BYTES = 12  # secrets.token_urlsafe(12): 16 characters, 96 random bits
_CODE = re.compile(r"[A-Za-z0-9_-]{16}")
MAX_URL = 2048
MAX_LINKS = 20  # per message; links after these stay as written


@dataclass(frozen=True)
class Link:
    start: int
    end: int
    url: str


def find_links(text: str) -> list[Link]:
    """The http(s) links of `text` we shorten, in order: at most MAX_LINKS, each at most
    MAX_URL characters and with a host."""
    found: list[Link] = []
    for match in _LINK.finditer(text):
        url = match.group().rstrip(_TRAILING)
        if len(url) > MAX_URL or not redirectable(url):
            continue
        found.append(Link(match.start(), match.start() + len(url), url))
        if len(found) == MAX_LINKS:
            break
    return found


def rewrite(text: str, links: list[Link], replacements: list[str]) -> str:
    """`text` with each of `links` replaced by the replacement at its index."""
    parts, last = [], 0
    for link, replacement in zip(links, replacements, strict=True):
        parts += [text[last : link.start], replacement]
        last = link.end
    return "".join(parts) + text[last:]


def redirectable(url: str) -> bool:
    """Whether the redirect may send a browser to `url`: http or https with a host, and
    nothing a browser would read otherwise (no control characters or backslashes).

    >>> redirectable("https://shop.example/x"), redirectable("javascript:alert(1)"), redirectable("https:///x")
    (True, False, False)
    """
    if any(c < " " or c == "\\" for c in url):
        return False
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme.lower() in ("http", "https") and bool(parts.hostname)


def new_code() -> str:
    return secrets.token_urlsafe(CODE_BYTES)


def valid_code(code: str) -> bool:
    """Whether `code` looks like one we mint (anything else is a 404 with no query)."""
    return _CODE.fullmatch(code) is not None
