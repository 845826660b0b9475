"""What a file may be, as plain functions: its name cleaned, its media type normalised and
checked against a workspace's allowed types (patterns such as "image/*"), and the types
and extensions refused whatever a policy says (pages, scripts and programs, which a
browser or an operating system would run).

    >>> clean_filename("../../etc/passwd"), clean_filename("  "), clean_filename("r\\u00e9sum\\u00e9.pdf")
    ('passwd', 'file', 'résumé.pdf')
    >>> type_problem("photo.png", "image/png", ["image/*"]) is None
    True
    >>> type_problem("invoice.html", "text/plain", ["text/plain"])
    'files ending in .html are refused'
"""

from __future__ import annotations

import mimetypes
import re

MAX_FILENAME = 255
MAX_CONTENT_TYPE = 127
GENERIC = "application/octet-stream"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_MEDIA_TYPE = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]{0,63}/[a-z0-9][a-z0-9!#$&^_.+-]{0,63}$")
_PATTERN = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]{0,63}/(\*|[a-z0-9][a-z0-9!#$&^_.+-]{0,63})$")

# Never stored, whatever a workspace allows: a browser renders them (scripts run), an
# operating system runs them.
REFUSED_TYPES = frozenset(
    {
        "text/html",
        "application/xhtml+xml",
        "image/svg+xml",
        "text/javascript",
        "application/javascript",
        "application/ecmascript",
        "text/xml",
        "application/xml",
        "application/x-msdownload",
        "application/x-msdos-program",
        "application/x-executable",
        "application/x-sh",
        "application/x-shellscript",
        "application/java-archive",
        "application/vnd.microsoft.portable-executable",
        "application/x-apple-diskimage",
    }
)
REFUSED_EXTENSIONS = frozenset(
    {
        "htm",
        "html",
        "xhtml",
        "shtml",
        "svg",
        "svgz",
        "xml",
        "js",
        "mjs",
        "hta",
        "exe",
        "dll",
        "com",
        "bat",
        "cmd",
        "scr",
        "msi",
        "msp",
        "pif",
        "cpl",
        "vbs",
        "vbe",
        "jse",
        "wsf",
        "wsh",
        "ps1",
        "psm1",
        "sh",
        "bash",
        "jar",
        "apk",
        "app",
        "dmg",
        "deb",
        "rpm",
        "lnk",
    }
)


def clean_filename(name: str) -> str:
    """The last path segment, without control characters, at most MAX_FILENAME characters."""
    base = _CONTROL.sub("", name.replace("\\", "/").rsplit("/", 1)[-1]).strip().lstrip(".")
    if len(base) > MAX_FILENAME:
        stem, dot, extension = base.rpartition(".")
        base = (stem[: MAX_FILENAME - len(extension) - 1] + dot + extension) if dot and len(extension) < 16 else base
        base = base[:MAX_FILENAME]
    return base or "file"


def media_type(declared: str | None, filename: str) -> str | None:
    """The declared type without parameters, lower case; a missing or generic one guessed
    from the file name. None when the declared value is not a media type at all."""
    value = (declared or "").partition(";")[0].strip().lower()
    if not value or value == GENERIC:
        guessed = mimetypes.guess_type(filename, strict=False)[0]
        return guessed or GENERIC
    return value if _MEDIA_TYPE.match(value) else None


def valid_pattern(pattern: str) -> bool:
    """A media type or a "type/*" pattern, for a policy's list."""
    return bool(_PATTERN.match(pattern))


def allowed(content_type: str, patterns: list[str]) -> bool:
    kind = content_type.partition("/")[0]
    return any(p == content_type or p == f"{kind}/*" for p in patterns)


def type_problem(filename: str, content_type: str, patterns: list[str]) -> str | None:
    """Why a file of this name and type is refused, or None."""
    extension = filename.rpartition(".")[2].lower() if "." in filename else ""
    if extension in REFUSED_EXTENSIONS:
        return f"files ending in .{extension} are refused"
    if content_type in REFUSED_TYPES:
        return f"{content_type} files are refused"
    if not allowed(content_type, patterns):
        return f"{content_type} is not among this workspace's allowed types"
    return None
