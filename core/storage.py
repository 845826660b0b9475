"""Where attachments' bytes live: one small interface, and the disk store behind it (the
embedded default, under ATTACHMENT_DIR; every API process and worker must share it).

    store = storage()
    size = await store.save("7/3f9c…", chunks, limit=10_485_760)   # TooLarge past the limit
    async for chunk in await store.open("7/3f9c…"): ...             # FileNotFoundError if gone
    await store.delete(["7/3f9c…"])

A file is written under a temporary name and renamed once complete: a reader never sees
half a file, and a refused or broken upload leaves nothing behind. Keys are made by
Parley (`<workspace id>/<random hex>`), never from a client's file name.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import BinaryIO, Protocol

from core.config import settings

CHUNK = 64 * 1024


class TooLarge(Exception):
    """More bytes arrived than the limit allows; nothing was kept."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"larger than {limit} bytes")
        self.limit = limit


class Storage(Protocol):
    async def save(self, key: str, chunks: AsyncIterator[bytes], *, limit: int) -> int: ...

    async def open(self, key: str) -> AsyncIterator[bytes]: ...

    async def delete(self, keys: Iterable[str]) -> int: ...


def new_key(workspace_id: int) -> str:
    return f"{workspace_id}/{secrets.token_hex(16)}"


class DiskStorage:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        workspace, _, name = key.partition("/")
        if not workspace.isdigit() or not name.isalnum():
            raise ValueError("not a storage key")
        return self.root / workspace / name

    async def save(self, key: str, chunks: AsyncIterator[bytes], *, limit: int) -> int:
        path = self._path(key)
        draft = path.with_name(f".{path.name}.part")
        await asyncio.to_thread(path.parent.mkdir, parents=True, exist_ok=True)
        out = await asyncio.to_thread(draft.open, "wb")
        size = 0
        try:
            async for chunk in chunks:
                size += len(chunk)
                if size > limit:
                    raise TooLarge(limit)
                await asyncio.to_thread(out.write, chunk)
            await asyncio.to_thread(out.close)
            await asyncio.to_thread(os.replace, draft, path)
        except BaseException:
            out.close()
            draft.unlink(missing_ok=True)
            raise
        return size

    async def open(self, key: str) -> AsyncIterator[bytes]:
        """The file's chunks; FileNotFoundError at once if it is gone."""
        return self._chunks(await asyncio.to_thread(self._path(key).open, "rb"))

    async def _chunks(self, source: BinaryIO) -> AsyncIterator[bytes]:
        try:
            while chunk := await asyncio.to_thread(source.read, CHUNK):
                yield chunk
        finally:
            source.close()

    async def delete(self, keys: Iterable[str]) -> int:
        removed = 0
        for key in keys:
            path = self._path(key)
            if path.exists():
                await asyncio.to_thread(path.unlink, True)
                removed += 1
        return removed


def storage() -> Storage:
    """The deployment's store (the disk store: S3-compatible storage is not built yet)."""
    return DiskStorage(settings.attachment_dir)
