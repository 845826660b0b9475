"""Rate limits, shared by every API process: counters in Redis, kept by the `limits`
library (sliding window counters: two keys per limit and caller, whatever the rate).

    await rate_limits.hit("login-ip", settings.rate_limit_login_per_ip, ip, what="Too many logins from this address")
    # RateLimited (RATE_LIMITED, retryAfter) once the address has used its budget

Logins have a lockout on top (`check_login`, `login_failed`, `login_succeeded`): after
RATE_LIMIT_LOGIN_FAILURES_PER_ACCOUNT failed attempts the account is refused, even with
the right password, for LOGIN_LOCKOUT_SECONDS, twice as long at each further lockout up to
LOGIN_LOCKOUT_MAX_SECONDS; each lockout is logged on `parley.security`.

Each refusal counts in `parley_rate_limited_total` by the limit's name (GET /metrics): the
names given to `hit`, "login-lockout", and "sockets-per-principal" (a WebSocket closed
with 4429 past MAX_SOCKETS_PER_PRINCIPAL, runtime/websocket.py).

When Redis cannot be reached, limits are not enforced (logged): they protect the service,
they must not take it down with them.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import time
from collections.abc import Awaitable
from functools import lru_cache

from limits import RateLimitItem, parse_many
from limits.aio.storage import RedisStorage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from redis.asyncio import Redis
from redis.exceptions import RedisError

from core import keys
from core.config import settings
from core.errors import RateLimited
from core.metrics import RATE_LIMITED
from core.permissions import Principal

log = logging.getLogger("parley.security")

# Locks an account unless it is locked already; the lockout lasts twice as long as the
# previous one (remembered for ARGV[3] seconds), at most ARGV[2]. Answers the milliseconds
# of the new lockout (0: it was locked already) and its number.
_LOCK = """
if redis.call('exists', KEYS[1]) == 1 then return {0, 0} end
local count = redis.call('incr', KEYS[2])
redis.call('expire', KEYS[2], ARGV[3])
local ms = math.min(tonumber(ARGV[1]) * 2 ^ math.min(count - 1, 40), tonumber(ARGV[2]))
ms = math.floor(ms)
redis.call('set', KEYS[1], count, 'PX', ms)
return {ms, count}
"""


# Each widget call's limits (the settings: per channel, per address) and what a refusal says.
_WIDGET_RULES = {
    "contact-session": (
        "rate_limit_contact_session_per_channel",
        "rate_limit_contact_session_per_ip",
        "Too many contact sessions",
    ),
    "widget-events": (
        "rate_limit_widget_events_per_channel",
        "rate_limit_widget_events_per_ip",
        "Too many page views and events",
    ),
}


@lru_cache(maxsize=64)
def _items(rule: str) -> tuple[RateLimitItem, ...]:
    return tuple(parse_many(rule)) if rule.strip() else ()


def address_key(ip: str) -> str:
    """An address as limits count it: an IPv6 client holds a whole /64 (it can pick any
    address in it), so it is counted as one."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if address.version == 6:
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


def account_key(email: str) -> str:
    """An account by its e-mail, not kept in clear in Redis."""
    return hashlib.sha256(email.strip().lower().encode()).hexdigest()[:32]


class RateLimits:
    def __init__(self) -> None:
        self._redis: Redis | None = None
        self._limiter: SlidingWindowCounterRateLimiter | None = None

    def use(self, redis: Redis) -> None:
        """Count on this client's connection pool (the hub's: no connections of our own)."""
        self._redis = redis
        self._limiter = None

    @property
    def redis(self) -> Redis:
        if self._redis is None:
            self._redis = Redis.from_url(settings.redis_url or "")
        return self._redis

    @property
    def limiter(self) -> SlidingWindowCounterRateLimiter:
        if self._limiter is None:
            storage = RedisStorage(
                f"async+{settings.redis_url}",
                implementation="redispy",
                key_prefix=keys.rate_limits(),
                connection_pool=self.redis.connection_pool,  # type: ignore[arg-type]  # limits types **options narrowly
            )
            self._limiter = SlidingWindowCounterRateLimiter(storage)
        return self._limiter

    async def hit(self, name: str, rule: str, *identifiers: str, what: str) -> None:
        """Count one request of `identifiers` against each limit of `rule`; RateLimited
        ("<what>: try again in N seconds.") when one of them is used up."""
        try:
            for item in _items(rule):
                if not await self.limiter.hit(item, name, *identifiers):
                    stats = await self.limiter.get_window_stats(item, name, *identifiers)
                    RATE_LIMITED.labels(name).inc()
                    raise RateLimited(what, stats.reset_time - time.time())
        except RedisError as exc:
            log.warning("rate limit %s not enforced: Redis unreachable (%s)", name, exc)

    async def hit_request(self, principal: Principal | None, ip: str | None) -> None:
        """One GraphQL request over HTTP, counted against its agent, API key or contact
        (anonymous requests against their address)."""
        if principal is not None:
            caller = f"{principal.kind.value}:{principal.agent_id or principal.api_key_id or principal.contact_id}"
        elif ip:
            caller = f"ip:{address_key(ip)}"
        else:
            return
        await self.hit("graphql", settings.rate_limit_graphql_per_principal, caller, what="Too many requests")

    async def hit_widget(self, kind: str, channel: str, ip: str | None) -> None:
        """What a widget or SDK key lets anybody call (`kind`: "contact-session", or
        "widget-events" for page views and events): per address, then per channel, so that
        one flooding address is refused before it spends its channel's budget."""
        channel_setting, ip_setting, what = _WIDGET_RULES[kind]
        per_channel, per_ip = getattr(settings, channel_setting), getattr(settings, ip_setting)
        if ip:
            await self.hit(f"{kind}-ip", per_ip, address_key(ip), what=f"{what} from this address")
        await self.hit(f"{kind}-channel", per_channel, channel, what=f"{what} on this channel")

    # -- login ---------------------------------------------------------------------------

    async def check_login(self, email: str, ip: str | None) -> None:
        """Before a password is checked: the address's budget (a success spends it too),
        then the account's lockout."""
        if ip:
            await self.hit(
                "login-ip", settings.rate_limit_login_per_ip, address_key(ip), what="Too many logins from this address"
            )
        try:
            locked_ms = await self.redis.pttl(keys.login_lockout(account_key(email)))
        except RedisError as exc:
            log.warning("login lockout not checked: Redis unreachable (%s)", exc)
            return
        if locked_ms > 0:
            RATE_LIMITED.labels("login-lockout").inc()
            raise RateLimited("This account is locked after too many failed logins", locked_ms / 1000)

    async def login_failed(self, email: str, ip: str | None) -> None:
        """A wrong password (or an unknown e-mail, which must look the same): counted
        against the account, which is locked when its failures reach the limit."""
        account = account_key(email)
        rule = settings.rate_limit_login_failures_per_account
        try:
            for item in _items(rule):
                await self.limiter.hit(item, "login-failures", account)
                if await self.limiter.test(item, "login-failures", account):
                    continue
                milliseconds = (settings.login_lockout_seconds * 1000, settings.login_lockout_max_seconds * 1000)
                locked: Awaitable[list[int]] = self.redis.eval(  # type: ignore[assignment]  # redis-py types sync and async alike
                    _LOCK,
                    2,
                    keys.login_lockout(account),
                    keys.login_lockouts(account),
                    str(milliseconds[0]),
                    str(milliseconds[1]),
                    str(settings.login_lockout_memory_seconds),
                )
                ms, count = await locked
                # The next lockout needs as many failures again (and lasts twice as long).
                await self.limiter.clear(item, "login-failures", account)
                if ms:
                    log.warning(
                        "login locked for account %r for %d s after %d failed attempts in %s "
                        "(lockout %d in a row; last attempt from %s)",
                        email.strip().lower(),
                        ms // 1000,
                        item.amount,
                        f"{item.get_expiry()} s",
                        count,
                        ip or "an unknown address",
                    )
                return
        except RedisError as exc:
            log.warning("login failure not counted: Redis unreachable (%s)", exc)

    async def login_succeeded(self, email: str) -> None:
        """The right password: the account's failures and lockout history are forgotten
        (not the address's budget)."""
        account = account_key(email)
        try:
            for item in _items(settings.rate_limit_login_failures_per_account):
                await self.limiter.clear(item, "login-failures", account)
            await self.redis.delete(keys.login_lockouts(account))
        except RedisError as exc:
            log.warning("login failures not reset: Redis unreachable (%s)", exc)


rate_limits = RateLimits()
