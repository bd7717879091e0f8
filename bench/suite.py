"""The benchmark run: start everything, measure each side the same way, stop everything.

Sides, one after another so that each has the machine to itself: the mock directly,
LiteLLM's proxy in one process and with a worker per core, Coppertone under uvicorn in
one process and with a worker per core (as deployed), and under daphne. The mock and
the load generator run in their own processes throughout, pinned off the one-process
servers' core where the machine has more than one (bench/procs.py, SERVER_CPUS and LOAD_CPUS).
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from bench import coppertone, litellm_proxy, profile, replies
from bench.mock_upstream import reply_text
from bench.procs import (
    HOST,
    LOAD_CPUS,
    PYTHON,
    SERVER_CPUS,
    BenchError,
    Interactive,
    Processes,
    cpu_seconds,
    free_port,
    loadgen,
    rss_kib,
    run_json,
    wait_http,
)

PROMPT = [{"role": "user", "content": "Say something short, please."}]


@dataclass(frozen=True)
class Plan:
    smoke: bool
    warmup: float  # seconds before each throughput window
    duration: float  # seconds of each throughput window
    concurrencies: tuple[int, ...]
    ttft_requests: int
    saturation_concurrency: int
    saturation_tokens: int
    saturation_seconds: float
    paced_streams: int
    paced_tokens: int
    paced_delay_ms: float
    paced_stagger: float  # the streams start spread evenly over this many seconds
    idle_sockets: int
    servers: tuple[str, ...]
    litellm: bool
    local_model: bool
    queries: bool = True
    # A count instead of a time window, where a busy machine must not leave a window empty.
    nonstream_requests: int | None = None
    profile: bool = False  # py-spy on the first server under the heaviest loads
    # Attaching to a streaming reply: a paced reply, stopped once attached to.
    attaches: int = 40
    attach_tokens: int = 400
    attach_delay_ms: float = 5.0
    attach_after_seq: int = 20  # how far the starting socket has read when another attaches
    # Following from another process: each of `follow_starters` sockets on the first
    # process starts long replies, `follow_followers` sockets on the second follow each.
    follow_starters: int = 4
    follow_followers: int = 2
    follow_tokens: int = 10000


FULL = Plan(
    smoke=False,
    warmup=1.0,
    duration=4.0,
    concurrencies=(1, 10, 50),
    ttft_requests=60,
    saturation_concurrency=16,
    saturation_tokens=2000,
    saturation_seconds=5.0,
    # Started evenly over 3 s (50 new turns a second, below every side's turn rate) and
    # 5 s long, so all 150 stream together for 2 s: the added first-token time is then
    # what relaying 15,000 chunks/s costs, not a queue of turn starts.
    paced_streams=150,
    paced_tokens=500,
    paced_delay_ms=10.0,
    paced_stagger=3.0,
    idle_sockets=5000,
    servers=coppertone.SERVERS,
    litellm=True,
    local_model=True,
)

SMOKE = Plan(
    smoke=True,
    warmup=0.2,
    duration=0.5,
    concurrencies=(1, 4),
    ttft_requests=3,
    saturation_concurrency=2,
    saturation_tokens=200,
    saturation_seconds=0.8,
    paced_streams=5,
    paced_tokens=20,
    paced_delay_ms=10.0,
    paced_stagger=0.1,
    idle_sockets=20,
    servers=("uvicorn",),
    litellm=False,
    local_model=False,
    nonstream_requests=12,
    attaches=3,
    attach_tokens=200,
    attach_after_seq=5,
)


@dataclass
class Side:
    """One thing under measurement, reached the same way as the others."""

    name: str
    base_url: str  # the OpenAI-compatible base, ending in /v1
    model_prefix: str
    headers: dict[str, str]
    pid: int  # whose CPU time is charged to it
    ws_url: str = ""
    ws_headers: dict[str, str] = field(default_factory=dict)

    def body(self, tokens: int, delay_ms: float = 0, stream: bool = False) -> dict[str, Any]:
        model = f"{self.model_prefix}mock-t{tokens}-d{delay_ms:g}"
        body: dict[str, Any] = {"model": model, "messages": PROMPT}
        if stream:
            body["stream"] = True
        return body

    def ws_message(self, tokens: int, delay_ms: float = 0) -> dict[str, Any]:
        return {
            "type": "send",
            "text": PROMPT[0]["content"],
            "conversation_id": None,
            "provider": "openai_compatible",
            "model": f"mock-t{tokens}-d{delay_ms:g}",
        }


class Background:
    """One call run in a thread (it only waits on a subprocess), started at most once."""

    def __init__(self, call: Callable[[], dict[str, Any]]) -> None:
        self.call = call
        self.thread: threading.Thread | None = None
        self.value: dict[str, Any] = {}
        self.error: BaseException | None = None

    def start(self) -> None:
        if self.thread is None:
            self.thread = threading.Thread(target=self._run, daemon=True)
            self.thread.start()

    def _run(self) -> None:
        try:
            self.value = self.call()
        except BaseException as exc:  # handed to the thread that waits for it
            self.error = exc

    def wait(self, timeout: float) -> None:
        self.start()
        assert self.thread is not None
        self.thread.join(timeout)
        if self.thread.is_alive():
            raise BenchError(f"preparing Coppertone took longer than {timeout:.0f}s")

    def result(self, timeout: float) -> dict[str, Any]:
        self.wait(timeout)
        if self.error is not None:
            raise self.error
        return self.value


class Run:
    def __init__(self, plan: Plan, out: Path, max_seconds: float) -> None:
        self.plan = plan
        self.out = out
        self.started = time.monotonic()
        self.deadline = self.started + max_seconds
        self.results: dict[str, Any] = {"sides": {}, "problems": []}

    # --- bookkeeping ------------------------------------------------------------

    def say(self, line: str) -> None:
        print(f"[{time.monotonic() - self.started:6.1f}s] {line}", flush=True)

    def problem(self, where: str, error: Exception | str) -> None:
        text = f"{where}: {error}"
        self.results["problems"].append(text)
        self.say(f"  ! {text}")

    def time_left(self) -> float:
        return self.deadline - time.monotonic()

    def step(self, side: str, key: str, measure: Callable[[], dict[str, Any]]) -> None:
        """Run one measurement; a failure is recorded and the run goes on."""
        if self.time_left() < 0:
            self.problem(f"{side} {key}", "skipped: the run's time budget is spent")
            return
        try:
            figures = measure()
        except (BenchError, OSError, ValueError, KeyError, TypeError) as exc:
            # One broken measurement (a missing endpoint, a refused socket) must not cost
            # the rest of the run: it is recorded and shown with the table.
            self.problem(f"{side} {key}", f"{type(exc).__name__}: {exc}")
            figures = {"error": str(exc)}
        self.results["sides"].setdefault(side, {})[key] = figures
        if figures.get("errors"):
            sample = " ".join(str((figures.get("error_samples") or [""])[0]).split())[:160]
            self.problem(f"{side} {key}", f"{figures['errors']} errors, the first: {sample}")

    # --- measurements -------------------------------------------------------------

    def charged(self, side: Side, spec: dict[str, Any], profile_as: str = "") -> dict[str, Any]:
        """Run the load generator and charge the server's CPU time to the requests."""
        spy = None
        if profile_as and self.plan.profile and side.name == self.plan.servers[0]:
            raw = self.out.parent / f"profile-{side.name}-{profile_as}.txt"
            seconds = float(spec.get("warmup", 0)) + float(spec.get("duration") or 5)
            spy = profile.start(side.pid, raw, seconds)
            if spy is None:
                self.problem("profile", "py-spy is not installed (pip install py-spy)")
        cpu0 = cpu_seconds(side.pid)
        result = loadgen(spec)
        spent = cpu_seconds(side.pid) - cpu0
        if spy is not None:
            spy.wait(60)
            if raw.exists():
                result["profile"] = {"file": str(raw), **profile.summarize(raw)}
        result["server_cpu_s"] = spent
        if result.get("all_done"):
            result["server_cpu_ms_per_request"] = spent * 1000 / result["all_done"]
        if result.get("seconds"):
            result["server_cpu_share"] = spent / max(result["seconds"], 1e-9)
        return result

    def nonstream(self, side: Side, concurrency: int) -> dict[str, Any]:
        plan = self.plan
        result = self.charged(
            side,
            {
                "mode": "http",
                "url": f"{side.base_url}/chat/completions",
                "headers": side.headers,
                "body": side.body(10),
                "expect_tail": reply_text(10)[-15:],
                "concurrency": concurrency,
                **(
                    {"requests": plan.nonstream_requests}
                    if plan.nonstream_requests
                    else {"warmup": plan.warmup, "duration": plan.duration}
                ),
                "timeout": 30,
                "deadline": plan.warmup + plan.duration + 40,
            },
            profile_as=f"nonstream_c{concurrency}"
            if concurrency == max(plan.concurrencies)
            else "",
        )
        lat = result.get("latency_ms", {})
        self.say(
            f"  {side.name:<8} /v1 non-stream c={concurrency:<3} {result['rps']:8.1f} req/s  "
            f"p50 {lat.get('p50', 0):6.2f}  p95 {lat.get('p95', 0):6.2f}  "
            f"p99 {lat.get('p99', 0):6.2f} ms  "
            f"cpu {result.get('server_cpu_ms_per_request', 0):5.2f} ms/req  "
            f"errors {result['errors']}"
        )
        return result

    def stream_spec(self, side: Side, ws: bool, tokens: int, delay_ms: float = 0) -> dict[str, Any]:
        if ws:
            return {
                "mode": "ws",
                "url": side.ws_url,
                "headers": side.ws_headers,
                "ws_message": side.ws_message(tokens, delay_ms),
                "expect_tokens": tokens,
            }
        return {
            "mode": "sse",
            "url": f"{side.base_url}/chat/completions",
            "headers": side.headers,
            "body": side.body(tokens, delay_ms, stream=True),
            "expect_tokens": tokens,
        }

    def first_token(self, side: Side, ws: bool) -> dict[str, Any]:
        spec = self.stream_spec(side, ws, 10)
        loadgen({**spec, "requests": 3, "deadline": 30, "timeout": 10})  # warm the path
        result = self.charged(
            side,
            {
                **spec,
                "concurrency": 1,
                "requests": self.plan.ttft_requests,
                "timeout": 10,
                "deadline": 20 + self.plan.ttft_requests * 0.5,
            },
        )
        ttft, ttfb = result.get("ttft_ms", {}), result.get("ttfb_ms", {})
        self.say(
            f"  {side.name:<8} {'WebSocket' if ws else '/v1 stream'} c=1: first token "
            f"p50 {ttft.get('p50', 0):6.2f} p95 {ttft.get('p95', 0):6.2f} ms, first byte "
            f"p50 {ttfb.get('p50', 0):6.2f} ms  errors {result['errors']}"
        )
        return result

    def saturation(self, side: Side, ws: bool) -> dict[str, Any]:
        plan = self.plan
        spec = self.stream_spec(side, ws, plan.saturation_tokens)
        result = self.charged(
            side,
            {
                **spec,
                "concurrency": plan.saturation_concurrency,
                "warmup": plan.warmup,
                "duration": plan.saturation_seconds,
                "timeout": 60,
                "deadline": plan.warmup + plan.saturation_seconds + 60,
            },
            profile_as="ws_saturation" if ws else "stream_saturation",
        )
        self.say(
            f"  {side.name:<8} {'WebSocket' if ws else '/v1 stream'} saturation "
            f"({plan.saturation_concurrency} streams of {plan.saturation_tokens} tokens): "
            f"{result['tokens_per_s']:9.0f} chunks/s in {result['frames_per_s']:.0f} "
            f"{'frames' if ws else 'events'}/s  server cpu "
            f"{result.get('server_cpu_share', 0):.0%}  load generator cpu "
            f"{result['loadgen_cpu_share']:.0%}  errors {result['errors']}"
        )
        return result

    def paced(self, side: Side, ws: bool) -> dict[str, Any]:
        plan = self.plan
        spec = self.stream_spec(side, ws, plan.paced_tokens, plan.paced_delay_ms)
        stream_seconds = plan.paced_tokens * plan.paced_delay_ms / 1000
        result = self.charged(
            side,
            {
                **spec,
                "concurrency": plan.paced_streams,
                "requests": plan.paced_streams,
                "stagger": plan.paced_stagger,
                "timeout": stream_seconds + 30,
                "deadline": plan.paced_stagger + stream_seconds + 40,
            },
        )
        ttft = result.get("ttft_ms", {})
        self.say(
            f"  {side.name:<8} {plan.paced_streams} paced {'WebSockets' if ws else '/v1 streams'} "
            f"({plan.paced_tokens} tokens at {1000 / plan.paced_delay_ms:.0f}/s): complete "
            f"{result['complete']}/{plan.paced_streams}, first token p50 "
            f"{ttft.get('p50', 0):6.2f} p95 {ttft.get('p95', 0):6.2f} ms  errors {result['errors']}"
        )
        return result

    def skip(self, side: str, keys: tuple[str, ...], what: str) -> None:
        """A part this run cannot measure: said and recorded, not a problem."""
        text = f"{side} {what}: skipped"
        self.results.setdefault("skipped", []).append(text)
        for key in keys:
            self.results["sides"].setdefault(side, {})[key] = {"skipped": text}
        self.say(f"  - {text}")

    def idle_sockets(self, side: Side) -> dict[str, Any]:
        n = self.plan.idle_sockets
        spec = {
            "mode": "ws_idle",
            "url": side.ws_url,
            "headers": side.ws_headers,
            "connections": n,
            "warm": 20,
            "hold": 120,
            "open_concurrency": 100,
            "settle": 0.3 if self.plan.smoke else 1.0,
        }
        holder = Interactive([PYTHON, "-m", "bench.loadgen", json.dumps(spec)], dict(os.environ))
        try:
            warm = holder.read(60)
            time.sleep(0.1 if self.plan.smoke else 0.5)
            before = rss_kib(side.pid)
            holder.send("go")
            ready = holder.read(60 + n / 50)
            time.sleep(0.1 if self.plan.smoke else 0.5)
            after = rss_kib(side.pid)
            holder.send("close")
            final = holder.read(60)
        finally:
            holder.close()
        per = (after - before) / max(1, ready["open"] - warm["open"])
        result = {
            **final,
            "requested": n,
            "held": ready["open"] - warm["open"],
            "warm_open": warm["open"],
            "open": ready["open"],
            "rss_before_kib": before,
            "rss_after_kib": after,
            "kib_per_socket": per,
            "nofile_limit": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
        }
        self.say(
            f"  {side.name:<8} {ready['open'] - warm['open']}/{n} idle WebSockets held: "
            f"RSS {before / 1024:.1f} -> {after / 1024:.1f} MiB, {per:.1f} KiB each"
        )
        return result

    def measure_side(self, side: Side, hub: bool) -> None:
        try:
            self.warm(side)
        except BenchError as exc:
            self.problem(f"{side.name} warm-up", exc)
        for c in self.plan.concurrencies:
            self.step(side.name, f"nonstream_c{c}", partial(self.nonstream, side, c))
        self.step(side.name, "stream_ttft", lambda: self.first_token(side, ws=False))
        self.step(side.name, "stream_saturation", lambda: self.saturation(side, ws=False))
        self.step(side.name, "paced", lambda: self.paced(side, ws=False))
        if not hub:
            return
        self.step(side.name, "ws_ttft", lambda: self.first_token(side, ws=True))
        self.step(side.name, "ws_saturation", lambda: self.saturation(side, ws=True))
        self.step(side.name, "ws_paced", lambda: self.paced(side, ws=True))
        self.step(side.name, "ws_attach", lambda: replies.attach(self, side, side))
        self.step(side.name, "ws_idle", lambda: self.idle_sockets(side))
        if self.plan.local_model and side.name == self.plan.servers[0]:
            self.step(side.name, "local_v1", lambda: self.local_through_hub(side))

    def local_through_hub(self, side: Side) -> dict[str, Any]:
        """The embedded model streamed through /v1, as a client sees it."""
        from bench.local_model import PROMPT as LOCAL_PROMPT
        from bench.local_model import TEMPERATURE

        body: dict[str, Any] = {
            "model": "local/SmolLM2-135M-Instruct",
            "messages": [{"role": "user", "content": LOCAL_PROMPT}],
            "stream": True,
            "temperature": TEMPERATURE,
            "max_tokens": 8,
        }
        spec = {
            "mode": "sse",
            "url": f"{side.base_url}/chat/completions",
            "headers": side.headers,
            "body": body,
            "concurrency": 1,
            "requests": 1,
            "vary_prompt": True,
            "timeout": 120,
            "deadline": 150,
        }
        loadgen(spec)  # loads the model into the server process
        body["max_tokens"] = 128
        result = loadgen({**spec, "requests": 5, "timeout": 60, "deadline": 330})
        self.say(
            f"  {side.name:<8} embedded model through /v1: "
            f"{result.get('events_per_s_p50') or 0:.1f} tokens/s, first token p50 "
            f"{result.get('ttft_ms', {}).get('p50', 0):.0f} ms  errors {result['errors']}"
        )
        return result

    # --- the sides --------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        raise_nofile_limit()
        plan = self.plan
        with (
            tempfile.TemporaryDirectory(prefix="coppertone-bench-") as tmp,
            Processes(Path(tmp)) as procs,
        ):
            work = Path(tmp)
            self.results["logs"] = tmp
            mock_port = free_port()
            mock = procs.start(
                "mock",
                [PYTHON, "-m", "bench.mock_upstream", "--port", str(mock_port)],
                dict(os.environ),
                cpus=LOAD_CPUS,
            )
            mock_url = f"http://{HOST}:{mock_port}/v1"
            wait_http(mock, f"{mock_url}/models", 20)
            self.say(f"mock upstream on {mock_url} (pid {mock.pid})")
            try:
                self.sides(procs, work, mock_url, mock.pid)
            finally:
                self.results["pids"] = procs.started
                procs.stop_all()
                keep_logs(work, self.out.parent / "logs")
        if plan.local_model and self.time_left() > 60:
            self.step("local", "model", self.local_model)
        self.results["seconds"] = round(time.monotonic() - self.started, 1)
        return self.results

    def sides(self, procs: Processes, work: Path, mock_url: str, mock_pid: int) -> None:
        """Direct to the mock, LiteLLM, then Coppertone under each ASGI server."""
        plan = self.plan
        env = coppertone.environment(work, plan.smoke)
        self.results["database"] = coppertone.database_label(plan.smoke)
        # Migrating takes seconds: it overlaps a phase that measures nothing (LiteLLM's
        # start-up), or, in a smoke run whose figures do not matter, the direct phase.
        preparing = Background(partial(coppertone.prepare, env, mock_url))
        if plan.smoke:
            preparing.start()

        direct = Side("direct", mock_url, "", {}, mock_pid)
        self.say("direct to the mock:")
        self.measure_side(direct, hub=False)

        if plan.litellm:
            # One process, then a worker per core: the same two ways Coppertone runs.
            for workers in (1, coppertone.WORKERS):
                if self.time_left() > 120:
                    self.litellm(procs, work, mock_url, preparing, workers)
        preparing.start()
        self.say(f"Coppertone: migrating a fresh database ({self.results['database']})...")
        seeded = preparing.result(600)
        for server in plan.servers:
            if self.time_left() < 60:
                self.problem(server, "skipped: the run's time budget is spent")
                continue
            coppertone.vacuum(env)
            self.hub(procs, env, server, seeded)
            if server == plan.servers[0] and plan.queries:
                self.step("queries", "per_turn", lambda: self.queries(env, seeded))

    def litellm(
        self, procs: Processes, work: Path, mock_url: str, preparing: Background, workers: int
    ) -> None:
        plan = self.plan
        name = "litellm" if workers == 1 else "litellm-workers"
        try:
            executable = litellm_proxy.ensure_venv(work / "litellm-install.log")
        except (BenchError, OSError) as exc:
            self.problem("litellm", exc)
            return
        models = sorted(
            {
                "mock-t10-d0",
                f"mock-t{plan.saturation_tokens}-d0",
                f"mock-t{plan.paced_tokens}-d{plan.paced_delay_ms:g}",
            }
        )
        config, log_config = litellm_proxy.write_config(work, mock_url, models)
        port = free_port()
        proc = procs.start(
            name,
            litellm_proxy.command(executable, config, log_config, port, workers),
            litellm_proxy.environment(work),
            cpus=SERVER_CPUS if workers == 1 else None,
        )
        self.say(f"LiteLLM proxy, {workers} worker(s): starting (it takes ~30 s to import)...")
        preparing.start()
        try:
            wait_http(proc, f"http://{HOST}:{port}/health/liveliness", 180)
            preparing.wait(600)  # nothing else may run while LiteLLM is measured
            self.results["litellm_version"] = litellm_proxy.VERSION
            side = Side(
                name,
                f"http://{HOST}:{port}/v1",
                "",
                {"Authorization": f"Bearer {litellm_proxy.MASTER_KEY}"},
                proc.pid,
            )
            self.measure_side(side, hub=False)
        except BenchError as exc:
            self.problem(name, exc)
        finally:
            procs.stop(proc)

    def hub(
        self, procs: Processes, env: dict[str, str], server: str, seeded: dict[str, Any]
    ) -> None:
        port = free_port()
        proc = procs.start(
            server, coppertone.command(server, port), env, cpus=coppertone.cpus(server)
        )
        base = f"http://{HOST}:{port}"
        self.say(f"Coppertone under {server} on {base} (pid {proc.pid}):")
        try:
            wait_http(proc, f"{base}/api/v1/health", 60)
            side = Side(
                server,
                f"{base}/v1",
                "openai_compatible/",
                {"Authorization": f"Bearer {seeded['token']}"},
                proc.pid,
                ws_url=f"ws://{HOST}:{port}/ws/chat/",
                ws_headers={"Cookie": seeded["cookie"], "Origin": base},
            )
            self.measure_side(side, hub=True)
            if server == self.plan.servers[0]:
                replies.across(self, procs, env, server, side)
        except BenchError as exc:
            self.problem(server, exc)
        finally:
            procs.stop(proc)

    def warm(self, side: Side) -> None:
        """First requests import and connect; they are start-up, not speed."""
        for stream in (False, True):
            loadgen(
                {
                    "mode": "sse" if stream else "http",
                    "url": f"{side.base_url}/chat/completions",
                    "headers": side.headers,
                    "body": side.body(10, stream=stream),
                    "expect_tokens": 10,
                    "concurrency": 2,
                    "requests": 10,
                    "timeout": 30,
                    "deadline": 60,
                }
            )

    def queries(self, env: dict[str, str], seeded: dict[str, Any]) -> dict[str, Any]:
        result = run_json(
            [PYTHON, "-m", "bench.queries", str(seeded["user_id"]), seeded["token"]], env, 120
        )
        line = ", ".join(
            f"{key} {value['queries']} queries (+{value['framing']} BEGIN/SAVEPOINT)"
            for key, value in result.items()
            if isinstance(value, dict)
        )
        self.say(f"  queries per turn ({result.get('database')}): {line}")
        return result

    def local_model(self) -> dict[str, Any]:
        self.say("embedded model: raw llama-cpp-python against the adapter...")
        code = "import json; from bench.local_model import measure; print(json.dumps(measure()))"
        env = coppertone.environment(Path(tempfile.mkdtemp(prefix="coppertone-local-")), True)
        return run_json([PYTHON, "-c", code], env, 600)


def keep_logs(work: Path, logs: Path) -> None:
    """The servers' logs outlive the temporary directory: a failure can be read later."""
    logs.mkdir(parents=True, exist_ok=True)
    for log in work.glob("*.log"):
        shutil.copyfile(log, logs / log.name)


def raise_nofile_limit() -> None:
    """5,000 sockets need more descriptors than some shells allow; children inherit this."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 20000 if hard == resource.RLIM_INFINITY else min(hard, 20000)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
