"""The shared :class:`~kansoku.gateway._state.GatewayState`: everything in Redis, for replicas.

Every state change is one Lua script (``_redis_scripts``), so a limit holds exactly however
many gateways share the server: a ``take`` over several rules reads, decides and writes in one
atomic step. Scripts run by EVALSHA; redis-py's script object loads a script again when Redis
answers NOSCRIPT (after a restart or ``SCRIPT FLUSH``). Reading what limits have used (``peek``,
for the status page) is a plain MGET evaluated by the pure policies: it writes nothing.

Time is the injected clock's wall time (``now_ns() / 1e9``), the only time replicas share; the
scripts treat a clock that steps back the way the Python policies do. Keys live under
``prefix``: ``rl:`` limits (the limit's parameters are part of the key, so a changed limit
starts fresh), ``spend:`` counters, ``br:`` breakers, ``dl:`` dead letters.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import orjson
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError, RedisError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError

from kansoku.clock import SYSTEM_CLOCK, Clock
from kansoku.errors import ConfigError
from kansoku.gateway import _redis_scripts as lua
from kansoku.gateway._deadletter import Attempt, DeadLetter, _attempt_dict, scrub
from kansoku.gateway._state import BreakerStates, DeadLetters, LimitStates, SpendStates
from kansoku.gateway._state_open import redis_address
from kansoku.policy import BreakerConfig, Rule, SlidingWindow, Verdict
from kansoku.policy._ratelimit import BucketState, Decision, RateLimit, check_amount, check_positive

__all__ = ["RedisState", "redis_client"]

# How long one state call may wait on Redis. Operations take ~0.1 ms; the largest, a take over
# every rule of a request (one Lua script), stays under 1 ms for a few rules, and 20 exact
# sliding windows holding 2,000 requests each measured ~50 ms. A second leaves room for that
# and for a Redis busy with someone else's slow command, yet bounds what a dead or hung Redis
# costs the request that runs into it (the guard then leaves Redis alone for a cool-down:
# ``_state_guard``). Connecting covers the TCP (and TLS) handshake, ~1 ms on the network a
# gateway shares with its Redis, and happens once per pooled connection.
CONNECT_TIMEOUT_S = 0.5
READ_TIMEOUT_S = 1.0
# A burst beyond the pool waits this long for a connection (each is busy for ~a millisecond)
# instead of failing at once.
POOL_WAIT_S = 1.0
POOL_SIZE = 64

_NS_PER_DAY = 86_400 * 10**9
_MAX_NS = 10**19 - 1  # letters sort by (MAX - created_ns) as 19 digits: newest first, by lex order
_PAGE = 500


def _esc(part: str) -> str:
    # Scopes and names may hold ':'; escaping keeps ("a:b", "c") and ("a", "b:c") apart.
    return part.replace("%", "%25").replace(":", "%3A")


def _s(x: bytes | str) -> str:
    return x.decode() if isinstance(x, bytes) else x


def _f(x: float) -> str:
    return repr(float(x))  # shortest exact form; Lua's tonumber reads it back bit for bit


def _params(lim: RateLimit) -> list[str]:
    if isinstance(lim, SlidingWindow):
        return ["w", _f(lim.limit), _f(lim.window_s), _f(lim.resolution_s)]
    return ["b", _f(lim.capacity), _f(lim.refill_per_s)]


def _rule_key(rule: Rule, params: Sequence[str], prefix: str) -> str:
    return f"{prefix}rl:{':'.join(params)}:{_esc(rule.scope)}:{rule.key}"


def _used(lim: RateLimit, raw: bytes | str | None, now: float) -> float:
    """What a limit has used, from its state as the scripts store it (``_redis_scripts``)."""
    if raw is None:
        return 0.0  # never taken from, or expired: fresh, as the scripts read it
    xs = [float(v) for v in _s(raw).split()]  # '%.17g' text reads back bit for bit
    if isinstance(lim, SlidingWindow):
        return lim.used(tuple(zip(xs[::2], xs[1::2], strict=True)), now)
    return lim.used(BucketState(xs[0], xs[1]), now)


def _rule_args(rules: Sequence[Rule], amounts: Sequence[str], prefix: str) -> tuple[list[str], list[str]]:
    keys: list[str] = []
    args: list[str] = []
    for rule, amount in zip(rules, amounts, strict=True):
        params = _params(rule.limit)
        key = _rule_key(rule, params, prefix)
        if key not in keys:
            keys.append(key)
        args += [params[0], str(keys.index(key) + 1), *params[1:], amount]
    return keys, args


class _Part:
    def __init__(self, state: RedisState) -> None:
        self._s = state


class RedisLimits(_Part):
    async def take(self, rules: Sequence[Rule], cost: float) -> Verdict:
        costs = [cost if r.cost is None else r.cost for r in rules]
        for c in (cost, *costs):
            check_amount("cost", c)
        keys, args = _rule_args(rules, [_f(c) for c in costs], self._s.prefix)
        out = await self._s.run(lua.TAKE, keys, [_f(lua.MARGIN_S), _f(self._s.now()), *args])
        decisions = tuple(
            Decision(bool(int(out[i])), float(out[i + 1]), float(out[i + 2]) if out[i + 2] else None)
            for i in range(1, len(out), 3)
        )
        if int(out[0]):
            return Verdict(True, 0.0, decisions)
        refused = [d.retry_after_s for d in decisions if not d.allowed]
        retry = None if None in refused else max(r for r in refused if r is not None)
        return Verdict(False, retry, decisions)

    async def settle(self, rules: Sequence[Rule], estimate: float, actual: float) -> None:
        check_amount("estimate", estimate)
        check_amount("actual", actual)
        todo = [r for r in rules if r.cost is None and actual != estimate]
        if not todo:
            return
        # A leading '-' marks a charge (use beyond the estimate); amounts themselves are >= 0.
        amount = _f(estimate - actual) if actual < estimate else "-" + _f(actual - estimate)
        keys, args = _rule_args(todo, [amount] * len(todo), self._s.prefix)
        await self._s.run(lua.SETTLE, keys, [_f(lua.MARGIN_S), _f(self._s.now()), *args])

    async def peek(self, rules: Sequence[Rule]) -> list[float]:
        # Plain reads, no script: a GET changes nothing a later take decides on, and the usage
        # comes from the same policy code the scripts are ports of.
        if not rules:
            return []
        keys = [_rule_key(r, _params(r.limit), self._s.prefix) for r in rules]
        raw = await self._s.client.mget(keys)
        now = self._s.now()
        return [_used(r.limit, v, now) for r, v in zip(rules, raw, strict=True)]


class RedisSpend(_Part):
    async def spent(self, counters: Sequence[str]) -> list[float]:
        keys = [self._s.prefix + "spend:" + c for c in counters]
        return [0.0 if v is None else float(v) for v in (await self._s.client.mget(keys) if keys else [])]

    async def add(self, counters: Sequence[str], amount: float, ttl_s: float) -> None:
        check_positive("ttl_s", ttl_s)
        if counters:
            keys = [self._s.prefix + "spend:" + c for c in counters]
            await self._s.run(lua.SPEND_ADD, keys, [_f(amount), str(max(1, round(ttl_s * 1000)))])


class RedisBreakers(_Part):
    async def _op(self, op: str, name: str, config: BreakerConfig, ok: bool = False) -> bool:
        c = config
        fields = [str(c.window), _f(c.failure_rate), str(c.min_calls), _f(c.open_s), str(c.half_open_calls)]
        ttl_ms = round(max(86_400.0, 2 * c.open_s) * 1000)  # idle breakers are forgotten after a day
        args = [op, _f(self._s.now()), ":".join(fields), *fields, "1" if ok else "0", str(ttl_ms)]
        return bool(int(await self._s.run(lua.BREAKER, [f"{self._s.prefix}br:{name}"], args)))

    async def allow(self, name: str, config: BreakerConfig) -> bool:
        return await self._op("allow", name, config)

    async def record(self, name: str, config: BreakerConfig, ok: bool) -> None:
        await self._op("record", name, config, ok)

    async def abandon(self, name: str, config: BreakerConfig) -> None:
        await self._op("abandon", name, config)

    async def states(self, names: Sequence[str]) -> dict[str, str]:
        pipe = self._s.client.pipeline(transaction=False)
        for n in names:
            pipe.hget(f"{self._s.prefix}br:{n}", "st")
        found = await pipe.execute()
        return {n: (_s(s) if s else "closed") for n, s in zip(names, found, strict=True)}


class RedisDeadLetters:
    """Letters are hashes; two lex-ordered indexes (all, per model) give newest-first paging."""

    def __init__(self, state: RedisState, retain_days: int) -> None:
        if isinstance(retain_days, bool) or not isinstance(retain_days, int) or retain_days < 1:
            raise ValueError("retain_days must be a positive whole number")
        self.retain_days = retain_days
        self._s = state
        p = state.prefix + "dl:"
        self._index, self._models, self._p = p + "index", p + "models", p

    def _model_index(self, model: str) -> str:
        return f"{self._p}m:{model}"

    @staticmethod
    def _from(created_ns: int) -> str:
        """The index's lex bound for "created before ``created_ns``" (members sort newest first)."""
        return "[" + f"{_MAX_NS - created_ns + 1:019d}" if created_ns <= _MAX_NS else "-"

    async def add(
        self, model: str, request: dict[str, Any], attempts: list[Attempt], key_name: str | None
    ) -> str:
        letter_id = "dl_" + secrets.token_hex(8)
        created = self._s.clock.now_ns()
        chain = [scrub(_attempt_dict(a)) for a in attempts]
        fields: list[str | bytes] = ["created_ns", str(created), "model", model]
        fields += ["request", orjson.dumps(scrub(request))]
        fields += ["attempts", orjson.dumps(chain), "replays", "0"]
        if key_name is not None:
            fields += ["key_name", key_name]
        member = f"{_MAX_NS - created:019d}:{letter_id}"
        ttl_ms = (self.retain_days + 1) * 86_400_000  # a safety net; purge() is the real retention
        keys = [self._p + letter_id, self._index, self._model_index(model), self._models]
        await self._s.run(lua.DL_ADD, keys, [member, str(ttl_ms), model, *fields])
        return letter_id

    async def get(self, letter_id: str) -> DeadLetter | None:
        h = await self._s.client.hgetall(self._p + letter_id)
        return self._letter(letter_id, h) if h else None

    def _letter(self, letter_id: str, raw: dict[Any, Any]) -> DeadLetter:
        h = {_s(k): v for k, v in raw.items()}
        key_name = h.get("key_name")
        return DeadLetter(
            id=letter_id,
            created_ns=int(h["created_ns"]),
            model=_s(h["model"]),
            request=orjson.loads(h["request"]),
            attempts=tuple(Attempt(**a) for a in orjson.loads(h["attempts"])),
            key_name=None if key_name is None else _s(key_name),
            replays=tuple(orjson.loads(h[f"replay:{i}"]) for i in range(1, int(h["replays"]) + 1)),
        )

    async def list(
        self, *, limit: int = 50, model: str | None = None, before_ns: int | None = None
    ) -> list[DeadLetter]:
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 1000:
            raise ValueError("limit must be a whole number from 1 to 1000")
        if before_ns is not None and before_ns <= 0:
            return []
        index = self._index if model is None else self._model_index(model)
        start = "-" if before_ns is None else self._from(before_ns)
        out: list[DeadLetter] = []
        while len(out) < limit:  # letters past their TTL may linger in the index until purge
            members = await self._s.client.zrangebylex(index, start, "+", 0, limit - len(out))
            if not members:
                break
            start = "(" + _s(members[-1])  # resume after the last one seen, whatever was added since
            pipe = self._s.client.pipeline(transaction=False)
            ids = [_s(m).split(":", 1)[1] for m in members]
            for letter_id in ids:
                pipe.hgetall(self._p + letter_id)
            out += [self._letter(i, h) for i, h in zip(ids, await pipe.execute(), strict=True) if h]
        return out

    async def record_replay(self, letter_id: str, outcome: dict[str, Any]) -> None:
        entry = orjson.dumps({"at_ns": self._s.clock.now_ns(), **scrub(outcome)})
        if not int(await self._s.run(lua.DL_REPLAY, [self._p + letter_id], [entry])):
            raise KeyError(letter_id)

    async def purge(self, now_ns: int) -> int:
        cutoff = now_ns - self.retain_days * _NS_PER_DAY
        if cutoff <= 0:
            return 0
        client, total = self._s.client, 0
        while True:  # in pages, so one purge never blocks Redis for long
            members = await client.zrangebylex(self._index, self._from(cutoff), "+", 0, _PAGE)
            if not members:
                return total
            models = sorted(map(_s, await client.smembers(self._models)))
            letters = [self._p + _s(m).split(":", 1)[1] for m in members]
            keys = [self._index, self._models, *map(self._model_index, models), *letters]
            total += int(await self._s.run(lua.DL_PURGE, keys, [str(len(models)), *members, *models]))
            if len(members) < _PAGE:
                return total


def redis_client(url: str) -> aioredis.Redis:
    """The client :meth:`RedisState.connect` uses, not yet connected; ``ValueError`` for a bad URL.

    The retry policy is explicit because redis-py's default depends on how a client is made (ten
    retries with backoff for ``Redis(host=...)``, none for a pool's connections). One immediate
    retry, on connection errors only: a pooled connection that went stale when Redis restarted
    fails once, and a new one answers. A timeout is not retried: a hung Redis would make the
    call wait twice.
    """
    retry = Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,))
    # Blocking: a burst beyond the pool waits for a connection instead of failing.
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=POOL_SIZE,
        timeout=POOL_WAIT_S,
        socket_connect_timeout=CONNECT_TIMEOUT_S,
        socket_timeout=READ_TIMEOUT_S,
        retry=retry,
    )
    return aioredis.Redis.from_pool(pool)


class RedisState:
    """A :class:`GatewayState` in Redis, shared by every gateway given the same URL and prefix.

    >>> state = await RedisState.connect("redis://localhost:6379/0")  # doctest: +SKIP
    """

    def __init__(
        self, client: aioredis.Redis, address: str, *, clock: Clock, prefix: str, retain_days: int
    ) -> None:
        self.client = client
        self.clock = clock
        self.prefix = prefix
        self.address = address
        self._scripts: dict[str, Any] = {}
        # Typed as the protocols: GatewayState's attributes are mutable, hence invariant.
        self.limits: LimitStates = RedisLimits(self)
        self.spend: SpendStates = RedisSpend(self)
        self.breakers: BreakerStates = RedisBreakers(self)
        self.dead_letters: DeadLetters = RedisDeadLetters(self, retain_days)

    @classmethod
    async def connect(
        cls, url: str, *, clock: Clock = SYSTEM_CLOCK, prefix: str = "kansoku:", retain_days: int = 7
    ) -> RedisState:
        """Connect and check the server answers; :class:`ConfigError` names host:port, not secrets."""
        address = redis_address(url)
        try:
            client = redis_client(url)
        except ValueError as exc:
            raise ConfigError("--state", f"not a valid Redis URL for {address}: {exc}") from None
        try:
            await client.ping()
        except (RedisError, OSError) as exc:
            await client.aclose()
            password = urlsplit(url).password
            reason = str(exc).replace(password, "***") if password else str(exc)
            if isinstance(exc, AuthenticationError | ResponseError):
                raise ConfigError("--state", f"Redis at {address} refused the connection: {reason}") from None
            raise ConfigError(
                "--state", f"cannot reach Redis at {address} ({reason}); is the server up and the URL right?"
            ) from None
        return cls(client, address, clock=clock, prefix=prefix, retain_days=retain_days)

    def __repr__(self) -> str:
        return f"RedisState({self.address!r}, prefix={self.prefix!r})"

    def now(self) -> float:
        return self.clock.now_ns() / 1e9

    async def run(self, script: str, keys: Sequence[str], args: Sequence[str | bytes]) -> Any:
        """EVALSHA ``script`` (loaded on first use and again after NOSCRIPT)."""
        registered = self._scripts.get(script)
        if registered is None:
            registered = self._scripts[script] = self.client.register_script(script)
        return await registered(keys=list(keys), args=list(args))

    async def close(self) -> None:
        await self.client.aclose()
