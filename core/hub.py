"""The real-time hub: one Redis pub/sub connection per process, fanned out locally.

    async with hub.subscribe(keys.contact_channel(ws_id, contact_id)) as events:
        async for event in events:      # dicts, as published
            ...

    await hub.publish([(channel, {"type": "contact.updated", ...})])

- Channels are reference-counted: the first local subscriber SUBSCRIBEs, the last one
  to leave UNSUBSCRIBEs.
- Each subscriber has a bounded queue. One that falls `queue_size` events behind is
  dropped and its iterator raises `SubscriberTooSlow`: memory never grows with a slow
  client, and the client reconnects and catches up with a query.
- A subscriber may also take events directly (`sub.direct = deliver`): the hub calls
  `deliver(event)` as it reads the event, and only what it declines (it returns False) goes
  to the queue, in order: while anything sits in the queue, or has been taken from it and
  not yet finished with, later events queue behind it. `deliver` raising
  `SubscriberTooSlow` drops the subscriber like an overflow. runtime/fanout.py delivers this
  way, without a task wake-up per subscriber and event.
- When Redis goes away the reader reconnects with backoff and subscribes again to every
  channel that still has subscribers. Events published meanwhile are lost to pub/sub, and
  a subscriber could not tell: so once reconnected, the hub drops every subscriber it has
  (as if it had fallen behind; watchers stay, and count `reconnects`). Their clients
  resubscribe and catch up by cursor.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

import redis.asyncio as redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

log = logging.getLogger("parley.hub")

_REDIS_DOWN = (RedisConnectionError, RedisTimeoutError, OSError)


# Subscribers an event is handed to between two yields to the event loop.
DISPATCH_SLICE = 256


class SubscriberTooSlow(Exception):
    """The subscriber's queue overflowed; it has been dropped from the hub."""


# Wakes a consumer waiting on an empty queue when its subscriber is dropped.
_DROPPED: dict[str, Any] = {}


class Subscription:
    def __init__(self, hub: Hub, channel: str, queue_size: int) -> None:
        self.hub = hub
        self.channel = channel
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=queue_size)
        self.overflowed = False
        self.direct: Callable[[dict[str, Any]], bool] | None = None
        # An event taken from the queue whose consumer has not asked for the next one yet.
        self._taken = False

    def offer(self, event: dict[str, Any]) -> bool:
        direct = self.direct
        if direct is not None and not self._taken and self.queue.empty():
            try:
                if direct(event):
                    self.hub.direct_deliveries += 1
                    return True
            except SubscriberTooSlow:
                self.drop()
                return False
            except Exception:
                log.exception("hub: direct delivery failed on %s; queueing the event", self.channel)
        try:
            self.queue.put_nowait(event)
            return True
        except asyncio.QueueFull:
            self.overflowed = True
            return False

    def drop(self) -> None:
        self.overflowed = True
        if self.queue.empty():
            self.queue.put_nowait(_DROPPED)

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> dict[str, Any]:
        self._taken = False
        if self.overflowed:
            raise SubscriberTooSlow(self.channel)
        event = await self.queue.get()
        if event is _DROPPED:
            raise SubscriberTooSlow(self.channel)
        self._taken = True
        return event


class Hub:
    def __init__(self, redis_url: str, *, queue_size: int = 256) -> None:
        self.redis_url = redis_url
        self.queue_size = queue_size
        self.redis: redis.Redis = redis.Redis.from_url(redis_url)
        self._subscribers: dict[str, set[Subscription]] = {}
        # Process-wide listeners (caches), called in the reader; not counted as subscribers.
        self._watchers: dict[str, list[Callable[[dict[str, Any]], None]]] = {}
        self._pubsub: Any = None  # redis.client.PubSub while connected
        self._command_lock = asyncio.Lock()
        self._has_channels = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()
        self.connected = asyncio.Event()
        self.reconnects = 0
        self.dropped_subscribers = 0
        self.direct_deliveries = 0  # events subscribers took directly (Subscription.direct)

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        self._reader = asyncio.create_task(self._read_forever(), name="hub-reader")

    async def stop(self) -> None:
        if self._reader:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        await self._close_pubsub()
        await self.redis.aclose()

    # -- publishing ------------------------------------------------------------------

    async def publish(self, events: Iterable[tuple[str, dict[str, Any]]]) -> None:
        """Publish events in one round trip. Callers publish after their commit."""
        events = list(events)
        if not events:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for channel, payload in events:
                pipe.publish(channel, json.dumps(payload, separators=(",", ":")))
            await pipe.execute()

    # -- subscribing -----------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def subscribe(self, channel: str) -> AsyncIterator[Subscription]:
        sub = Subscription(self, channel, self.queue_size)
        subscribers = self._subscribers.setdefault(channel, set())
        first = not subscribers
        subscribers.add(sub)
        self._has_channels.set()
        try:
            if first:
                await self._send("subscribe", channel)
            yield sub
        finally:
            self._remove(sub)

    async def watch(self, channel: str, callback: Callable[[dict[str, Any]], None]) -> None:
        """Call `callback(event)` for every event on `channel` for as long as the hub runs,
        subscribed again after every reconnect (count `reconnects` to notice a gap)."""
        self._watchers.setdefault(channel, []).append(callback)
        self._has_channels.set()
        if channel not in self._subscribers:
            await self._send("subscribe", channel)

    def subscriber_count(self, channel: str | None = None) -> int:
        if channel is not None:
            return len(self._subscribers.get(channel, ()))
        return sum(len(s) for s in self._subscribers.values())

    @property
    def channels(self) -> list[str]:
        return list(self._subscribers)

    def _remove(self, sub: Subscription) -> None:
        subscribers = self._subscribers.get(sub.channel)
        if not subscribers or sub not in subscribers:
            return
        subscribers.discard(sub)
        if not subscribers:
            del self._subscribers[sub.channel]
            if not self._subscribers and not self._watchers:
                self._has_channels.clear()
            # Not awaited by the leaving subscriber: a cancelled task must still unsubscribe.
            # The hub holds the task, so it is not garbage-collected half-way.
            task = asyncio.get_running_loop().create_task(self._unsubscribe_if_unused(sub.channel))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _unsubscribe_if_unused(self, channel: str) -> None:
        if channel not in self._subscribers and channel not in self._watchers:
            await self._send("unsubscribe", channel)

    async def _send(self, command: str, channel: str) -> None:
        """SUBSCRIBE or UNSUBSCRIBE on the live connection; when Redis is down, the
        reader subscribes to whatever is wanted once it reconnects."""
        async with self._command_lock:
            if self._pubsub is None:
                return
            try:
                await getattr(self._pubsub, command)(channel)
            except _REDIS_DOWN:
                log.warning("hub: %s %s failed, Redis unreachable", command, channel)

    # -- reading ---------------------------------------------------------------------

    async def _connect(self) -> None:
        pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        async with self._command_lock:
            wanted = list({**self._subscribers, **self._watchers})
            if wanted:
                await pubsub.subscribe(*wanted)
            else:
                await pubsub.connect()  # type: ignore[no-untyped-call]
            self._pubsub = pubsub
        self.connected.set()

    async def _close_pubsub(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        self.connected.clear()
        if pubsub is not None:
            with contextlib.suppress(Exception):
                await pubsub.aclose()

    async def _read_forever(self) -> None:
        backoff = 0.05
        while True:
            try:
                if self._pubsub is None:
                    await self._connect()
                    if self.reconnects:
                        log.info("hub: reconnected to Redis, %d channels", len(self._subscribers))
                        self._drop_everyone()
                    backoff = 0.05
                if not self._pubsub.subscribed:
                    # Nothing to read until someone subscribes; wake up now and then to
                    # notice a dead connection.
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._has_channels.wait(), timeout=1.0)
                    if not self._pubsub.subscribed:
                        await self._pubsub.ping()
                        await self._pubsub.get_message(timeout=0.01)
                        continue
                message = await self._pubsub.get_message(timeout=1.0)
                if message is not None and message.get("type") == "message":
                    await self._dispatch(message["channel"], message["data"])
                    # Let subscribers drain their queues between buffered messages, so a
                    # burst drops only the subscribers that really fall behind.
                    await asyncio.sleep(0)
            except asyncio.CancelledError:
                raise
            except _REDIS_DOWN as exc:
                log.warning("hub: Redis connection lost (%s); retrying in %.2fs", exc, backoff)
                await self._close_pubsub()
                self.reconnects += 1
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
            except Exception:
                log.exception("hub: unexpected error in reader; reconnecting")
                await self._close_pubsub()
                await asyncio.sleep(backoff)

    def _drop_everyone(self) -> None:
        """After a gap in the stream: every subscriber may have missed events (those
        published while the connection was down), so each is dropped and its client told
        to resubscribe and catch up."""
        dropped = [sub for subscribers in self._subscribers.values() for sub in subscribers]
        for sub in dropped:
            sub.drop()
            self._remove(sub)
        self.dropped_subscribers += len(dropped)
        if dropped:
            log.warning("hub: dropped %d subscribers that may have missed events while Redis was away", len(dropped))

    async def _dispatch(self, channel: bytes | str, data: bytes | str) -> None:
        name = channel.decode() if isinstance(channel, bytes) else channel
        subscribers = self._subscribers.get(name)
        watchers = self._watchers.get(name)
        if not subscribers and not watchers:
            return
        try:
            event = json.loads(data)
        except ValueError:
            log.warning("hub: dropped a malformed event on %s", name)
            return
        for watcher in watchers or ():
            try:
                watcher(event)
            except Exception:
                log.exception("hub: a watcher of %s failed", name)
        if not subscribers:
            return
        # Direct deliveries write to sockets from here: yield to the event loop every
        # DISPATCH_SLICE subscribers, so one event to 10,000 sockets (~0.6 s of writes)
        # does not hold up requests and keep-alives. The next event of the channel waits
        # for this one to reach everyone, so each socket still sees them in order.
        for n, sub in enumerate(list(subscribers), 1):
            if n % DISPATCH_SLICE == 0:
                await asyncio.sleep(0)
            if not sub.offer(event):
                log.warning("hub: dropping a subscriber of %s that fell behind", name)
                self.dropped_subscribers += 1
                self._remove(sub)
