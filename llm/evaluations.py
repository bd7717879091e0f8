"""Evaluations: one prompt set asked of several models, each answer an ordinary reply.

    llm/prompt_sets.py            the JSONL prompt set and its checks
    resolve_targets(user, names)  "provider/model" names, or EvaluationError
    create(...) / claim(...)      an Evaluation, and the right to run it
    run(evaluation_id)            asks every cell (prompt x model x repeat) with no run yet
    report(evaluation)            the numbers: the command, the page and the exports

Each cell is a turn through `replies.owned`, so a Ctrl-C or a Stop on the page stops the
replies in flight (stored `stopped` in their conversations) and leaves those cells
without a run: the one_run_per_cell constraint makes resuming ask each cell exactly once.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, TypeVar

from django.conf import settings
from django.db import IntegrityError, OperationalError
from django.utils import timezone

from accounts.models import User
from llm import replies, trips
from llm.events import TurnError, TurnFinished
from llm.models import Evaluation, EvaluationRun, Message, ProviderConfig
from llm.prompt_sets import listed, score
from llm.providers import registry
from llm.turns import run_turn

__all__ = [
    "EvaluationError",
    "ModelSummary",
    "Report",
    "claim",
    "create",
    "offered_targets",
    "report",
    "resolve_targets",
    "run",
    "start_in_background",
]

log = logging.getLogger(__name__)

TARGET_CHARS = 240  # EvaluationRun.target
SETTINGS_PAGE = "/settings/llm/"
# How often a running evaluation looks for a Stop pressed on its page (any worker).
WATCH_SECONDS = 1.0
# Your replies at once are capped (LLM_MAX_CONCURRENT_REPLIES): a cell refused as busy
# waits for a slot, but not forever (a reply left streaming by a dead process holds one).
BUSY_PAUSE_SECONDS = 1.0
BUSY_GIVE_UP_SECONDS = 300.0
# A database that was busy or dropped a connection: the same write again, a little later.
RETRY_PAUSES = (0.05, 0.2, 1.0)
# Refusals that are this prompt's own (too long, a NUL): stored as the cell's error.
PROMPT_REFUSALS = frozenset({"bad_request", "too_large"})
INTERNAL_WORDS = "Something went wrong on our side; the replies so far are kept: resume it."

T = TypeVar("T")
Cell = tuple[int, str, int]  # (prompt_index, target, repeat_index)
Progress = Callable[[int, int], None]  # (cells done, cells in all)


class EvaluationError(Exception):
    """Words a person can act on: a model that does not exist or is not set up."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# --- which models ------------------------------------------------------------------------


def _not_ready(kind: str, config: ProviderConfig | None) -> str:
    """Why `kind` cannot answer for this person (as the engine would refuse), or ""."""
    if kind == registry.LOCAL:
        return ""
    spec = registry.spec(kind)
    if config is None or (spec.needs_key and not config.has_key):
        return f"{spec.label} is not set up for this account: add it in Settings ({SETTINGS_PAGE})."
    if not config.enabled:
        return f"{spec.label} is turned off in Settings ({SETTINGS_PAGE}): turn it on first."
    return ""


def resolve_targets(user: User, names: Iterable[str]) -> list[str]:
    """`provider/model` for each name; a bare provider is the person's configured model."""
    configs = {c.kind: c for c in ProviderConfig.objects.filter(user=user)}
    targets: list[str] = []
    for raw in names:
        name = raw.strip()
        if not name:
            continue
        kind, _, model = name.partition("/")
        kind, model = kind.strip(), model.strip()
        if kind not in registry.PROVIDERS:
            raise EvaluationError(
                f"There is no provider called {kind!r} (in {name!r}): write provider/model, "
                f"the provider one of {', '.join(registry.PROVIDERS)}."
            )
        config = configs.get(kind)
        problem = _not_ready(kind, config)
        if problem:
            raise EvaluationError(f"{name}: {problem}")
        model = model or (config.effective_model if config else registry.spec(kind).default_model)
        target = f"{kind}/{model}"
        if len(target) > TARGET_CHARS:
            raise EvaluationError(f"The model name in {name!r} is too long.")
        if target not in targets:
            targets.append(target)
    if not targets:
        raise EvaluationError("Name at least one model, such as openai/gpt-4o-mini or local.")
    return targets


def offered_targets(user: User) -> list[str]:
    """The models a person can pick: the embedded one and each provider they set up."""
    local = registry.spec(registry.LOCAL)
    offered = [f"{registry.LOCAL}/{local.default_model}"]
    for config in ProviderConfig.objects.filter(user=user).order_by("kind"):
        if config.kind in registry.PROVIDERS and not _not_ready(config.kind, config):
            target = f"{config.kind}/{config.effective_model}"
            if target not in offered:
                offered.append(target)
    return offered


# --- the evaluation ----------------------------------------------------------------------


def prepared(prompts: Sequence[dict[str, Any]], max_tokens: int | None) -> list[dict[str, Any]]:
    """The prompts as stored: `max_tokens` in each that sets none, so that a resume asks
    exactly what the first run asked."""
    return [
        {**p, "max_tokens": max_tokens} if max_tokens and "max_tokens" not in p else dict(p)
        for p in prompts
    ]


def unfinished_like(
    user: User, prompts: list[dict[str, Any]], targets: list[str], repeat: int
) -> Evaluation | None:
    """The newest of this person's evaluations of the same prompts and models that did not
    finish: running the same command again after a Ctrl-C resumes it."""
    candidates = Evaluation.objects.filter(user=user, repeat=repeat).exclude(
        status=Evaluation.Status.DONE
    )
    for evaluation in candidates.order_by("-created_at", "-pk")[:50]:
        if evaluation.targets == targets and evaluation.prompts == prompts:
            return evaluation
    return None


def create(
    user: User,
    prompts: Sequence[dict[str, Any]],
    targets: Sequence[str],
    *,
    repeat: int = 1,
    concurrency: int = 4,
    name: str = "",
    max_tokens: int | None = None,
) -> Evaluation:
    """A pending evaluation (see `prepared` for `max_tokens`)."""
    return Evaluation.objects.create(
        user=user,
        name=name[:200],
        targets=list(targets),
        prompts=prepared(prompts, max_tokens),
        repeat=repeat,
        concurrency=concurrency,
    )


def cells(evaluation: Evaluation) -> list[Cell]:
    """Every cell, prompt by prompt: the models answer each prompt at about the same time."""
    return [
        (index, target, repeat)
        for index in range(len(evaluation.prompts))
        for target in evaluation.targets
        for repeat in range(evaluation.repeat)
    ]


def done_cells(evaluation: Evaluation) -> set[Cell]:
    return set(evaluation.runs.values_list("prompt_index", "target", "repeat_index"))


def claim(evaluation_id: int, *, force: bool = False) -> bool:
    """Mark it running, unless it already runs (here or in another process). `force`
    takes over one left `running` by a process that died."""
    rows = Evaluation.objects.filter(pk=evaluation_id)
    if not force:
        rows = rows.exclude(status=Evaluation.Status.RUNNING)
    return bool(rows.update(status=Evaluation.Status.RUNNING, error="", finished_at=None))


def concurrency_for(evaluation: Evaluation) -> int:
    """Replies at once: the evaluation's, within the person's cap (busy refusals otherwise)."""
    cap = settings.LLM_MAX_CONCURRENT_REPLIES
    return max(1, min(evaluation.concurrency, cap) if cap else evaluation.concurrency)


class _Halt(Exception):
    """The whole evaluation ends here; the cells without a run are left for a resume.
    `message` None: say how many replies are still to ask."""

    def __init__(self, status: str, message: str | None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


async def _ask(user: User, prompt: dict[str, Any], target: str) -> TurnFinished | TurnError:
    """One cell's reply, waiting out the person's rate limit and reply cap."""
    kind, _, model = target.partition("/")
    busy_since: float | None = None
    loop = asyncio.get_running_loop()
    internal = iter(RETRY_PAUSES)
    while True:
        turn = run_turn(
            user,
            prompt["prompt"],
            provider=kind,
            model=model,
            system=prompt.get("system"),
            max_tokens=prompt.get("max_tokens"),
            render_html=False,
        )
        try:
            async with replies.owned(turn) as reply:
                # Followed, not just awaited: a followed reply is not "unwatched".
                async for _item in reply.follow():
                    pass
                return await reply.ended()
        except TurnError as refused:
            if refused.code == "rate_limited":
                await asyncio.sleep(max(1.0, min(refused.retry_after or 1.0, 60.0)))
                continue
            if refused.code == "busy":
                busy_since = busy_since or loop.time()
                if loop.time() - busy_since < BUSY_GIVE_UP_SECONDS:
                    await asyncio.sleep(BUSY_PAUSE_SECONDS)
                    continue
            if refused.code == "internal":  # the start trip failed (a busy database)
                pause = next(internal, None)
                if pause is not None:
                    await asyncio.sleep(pause)
                    continue
            if refused.code in PROMPT_REFUSALS:
                return refused
            raise _Halt(Evaluation.Status.FAILED, refused.message) from None


def _run_for(
    evaluation_id: int, cell: Cell, prompt: dict[str, Any], answer: TurnFinished | TurnError
) -> EvaluationRun:
    index, target, repeat = cell
    run = EvaluationRun(
        evaluation_id=evaluation_id, prompt_index=index, target=target, repeat_index=repeat
    )
    if isinstance(answer, TurnError):
        run.status, run.error = Message.Status.ERROR, answer.message
        run.checks_total = score(prompt, "", False)[1]
        return run
    run.message_id = answer.message_id
    run.status, run.content = answer.status, answer.content
    run.error = answer.error.message if answer.error else ""
    run.ttft_ms, run.latency_ms = answer.ttft_ms, answer.latency_ms
    run.input_tokens, run.output_tokens, run.cost = (
        answer.input_tokens,
        answer.output_tokens,
        answer.cost,
    )
    if answer.attempts and answer.status == Message.Status.COMPLETE:
        # The person's fallback chain answered: that is not this model's answer.
        first = answer.attempts[0]
        run.status = Message.Status.ERROR
        run.error = (
            f"{target} did not answer ({first.error.message}); "
            f"{answer.provider}/{answer.model} answered instead, from your fallback chain."
        )
    run.checks_passed, run.checks_total = score(
        prompt, run.content, run.status == Message.Status.COMPLETE
    )
    return run


def _save(run: EvaluationRun) -> bool:
    """Store a cell's run; False when another process stored that cell first."""
    try:
        run.save()
    except IntegrityError:
        return False
    return True


def _begin(evaluation_id: int) -> tuple[Evaluation, list[Cell], int]:
    """The evaluation, its cells without a run, and how many have one."""
    evaluation = Evaluation.objects.select_related("user").get(pk=evaluation_id)
    done = done_cells(evaluation)
    every = cells(evaluation)
    todo = [cell for cell in every if cell not in done]
    return evaluation, todo, len(every) - len(todo)


def _status_of(evaluation_id: int) -> str | None:
    return Evaluation.objects.filter(pk=evaluation_id).values_list("status", flat=True).first()


def _end(evaluation_id: int, status: str, error: str | None) -> None:
    """Store how it ended; `error` None: say how many replies are still to ask."""
    rows = Evaluation.objects.filter(pk=evaluation_id)
    if error is None:
        evaluation = rows.get()
        total = len(cells(evaluation))
        left = total - len(done_cells(evaluation) & set(cells(evaluation)))
        error = f"Stopped with {left} of {total} replies still to ask: resume to ask them."
    rows.update(status=status, error=error, finished_at=timezone.now())


_begin_trip = trips.trip(_begin)
_save_trip = trips.trip(_save)
_status_trip = trips.trip(_status_of)
_end_trip = trips.trip(_end)


async def _retrying(write: Callable[..., Awaitable[T]], *args: Any) -> T:
    """A write that must land (a run, how it ended), tried again while the database is
    busy (SQLite's one writer) or reconnecting."""
    for pause in RETRY_PAUSES:
        try:
            return await write(*args)
        except OperationalError:
            await asyncio.sleep(pause)
    return await write(*args)


async def _watch(evaluation_id: int, work: asyncio.Task[None]) -> None:
    """End the evaluation when someone presses Stop on its page (from any worker)."""
    while not work.done():
        await asyncio.wait([work], timeout=WATCH_SECONDS)
        if work.done():
            return
        try:
            status = await _status_trip(evaluation_id)
        except OperationalError:  # the database was busy: look again in a second
            continue
        if status != Evaluation.Status.RUNNING:
            raise _Halt(Evaluation.Status.STOPPED, None)


@dataclass
class _Tally:
    done: int
    total: int
    stopped: int = 0


async def run(evaluation_id: int, on_progress: Progress | None = None) -> str:
    """Ask every cell that has no run yet, `concurrency` at a time; return the final status.

    The caller has claimed the evaluation (`claim`). A cancel (Ctrl-C) stops the replies
    in flight, stores the evaluation `stopped` and goes on.
    """
    try:
        return await _run(evaluation_id, on_progress)
    except asyncio.CancelledError:
        ending = asyncio.ensure_future(
            _retrying(_end_trip, evaluation_id, Evaluation.Status.STOPPED, None)
        )
        try:
            await asyncio.shield(ending)
        except asyncio.CancelledError:
            await ending  # a second cancel: the end must still be written
        raise
    except Exception:
        log.exception("evaluation %s failed", evaluation_id)
        await _retrying(_end_trip, evaluation_id, Evaluation.Status.FAILED, INTERNAL_WORDS)
        raise


async def _run(evaluation_id: int, on_progress: Progress | None) -> str:
    evaluation, todo, done = await _begin_trip(evaluation_id)
    tally = _Tally(done, done + len(todo))
    user = evaluation.user
    prompts: list[dict[str, Any]] = evaluation.prompts
    gate = asyncio.Semaphore(concurrency_for(evaluation))
    if on_progress:
        on_progress(tally.done, tally.total)

    async def one(cell: Cell) -> None:
        async with gate:
            prompt = prompts[cell[0]]
            answer = await _ask(user, prompt, cell[1])
        if isinstance(answer, TurnFinished) and answer.status == Message.Status.STOPPED:
            tally.stopped += 1  # stopped from elsewhere: not an answer, asked again on resume
            return
        if await _retrying(_save_trip, _run_for(evaluation_id, cell, prompt, answer)):
            tally.done += 1
            if on_progress:
                on_progress(tally.done, tally.total)

    async def every_cell() -> None:
        async with asyncio.TaskGroup() as group:
            for cell in todo:
                group.create_task(one(cell))

    halt = await _until_halted(evaluation_id, every_cell)
    status: str = Evaluation.Status.DONE
    error: str | None = ""
    if halt is not None:
        status, error = halt.status, halt.message
    elif tally.stopped:
        status, error = Evaluation.Status.STOPPED, None
    await _retrying(_end_trip, evaluation_id, status, error)
    return status


async def _until_halted(
    evaluation_id: int, every_cell: Callable[[], Coroutine[Any, Any, None]]
) -> _Halt | None:
    """Run the cells while watching for a Stop; the halt that ended them, if one did."""
    halt: _Halt | None = None
    try:
        async with asyncio.TaskGroup() as outer:
            work = outer.create_task(every_cell())
            outer.create_task(_watch(evaluation_id, work))
    except* _Halt as group:
        halt = _first_halt(group)
    except* Exception:
        log.exception("evaluation %s failed", evaluation_id)
        halt = _Halt(Evaluation.Status.FAILED, INTERNAL_WORDS)
    return halt


def _first_halt(group: BaseExceptionGroup[_Halt]) -> _Halt:
    first = group.exceptions[0]
    return _first_halt(first) if isinstance(first, BaseExceptionGroup) else first


# --- in the server's event loop -----------------------------------------------------------

_background: set[asyncio.Task[str]] = set()


def start_in_background(evaluation_id: int) -> asyncio.Task[str]:
    """Run a claimed evaluation on this event loop (an async view's), beyond the request."""
    task = asyncio.get_running_loop().create_task(run(evaluation_id))
    # The loop keeps only weak references to tasks: hold it until it ends.
    _background.add(task)
    task.add_done_callback(_forget)
    return task


def _forget(task: asyncio.Task[str]) -> None:
    _background.discard(task)
    if not task.cancelled():
        task.exception()  # already logged and stored by run(): retrieved, not re-reported


# --- the report --------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest rank: the smallest value that at least `q` of the values do not exceed."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def _percent(part: int, whole: int) -> float | None:
    return round(100 * part / whole, 1) if whole else None


@dataclass(frozen=True)
class ModelSummary:
    target: str
    runs: int
    complete: int
    checks_passed: int
    checks_total: int
    ttft_p50_ms: float | None
    ttft_p95_ms: float | None
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    input_tokens: int
    output_tokens: int
    cost: Decimal
    avg_chars: float | None  # of the complete answers

    @property
    def success_percent(self) -> float | None:
        return _percent(self.complete, self.runs)

    @property
    def checks_percent(self) -> float | None:
        return _percent(self.checks_passed, self.checks_total)

    def as_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "runs": self.runs,
            "complete": self.complete,
            "success_percent": self.success_percent,
            "checks_passed": self.checks_passed,
            "checks_total": self.checks_total,
            "checks_percent": self.checks_percent,
            "ttft_p50_ms": _ms(self.ttft_p50_ms),
            "ttft_p95_ms": _ms(self.ttft_p95_ms),
            "latency_p50_ms": _ms(self.latency_p50_ms),
            "latency_p95_ms": _ms(self.latency_p95_ms),
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cost": str(self.cost),
            "avg_chars": None if self.avg_chars is None else round(self.avg_chars, 1),
        }


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def summarize(target: str, runs: Sequence[EvaluationRun]) -> ModelSummary:
    complete = [r for r in runs if r.status == Message.Status.COMPLETE]
    ttfts = [r.ttft_ms for r in runs if r.ttft_ms is not None]
    latencies = [r.latency_ms for r in runs if r.latency_ms is not None]
    return ModelSummary(
        target=target,
        runs=len(runs),
        complete=len(complete),
        checks_passed=sum(r.checks_passed for r in runs),
        checks_total=sum(r.checks_total for r in runs),
        ttft_p50_ms=percentile(ttfts, 0.5),
        ttft_p95_ms=percentile(ttfts, 0.95),
        latency_p50_ms=percentile(latencies, 0.5),
        latency_p95_ms=percentile(latencies, 0.95),
        input_tokens=sum(r.input_tokens for r in runs),
        output_tokens=sum(r.output_tokens for r in runs),
        cost=sum((r.cost for r in runs), Decimal(0)),
        avg_chars=sum(len(r.content) for r in complete) / len(complete) if complete else None,
    )


@dataclass
class Answer:
    """One model's runs of one prompt (one a repeat)."""

    target: str
    runs: list[EvaluationRun] = field(default_factory=list)


@dataclass
class PromptResult:
    index: int
    prompt: dict[str, Any]
    answers: list[Answer]

    @property
    def number(self) -> int:
        return self.index + 1

    @property
    def checks(self) -> list[str]:
        return [f"contains “{c}”" for c in listed(self.prompt, "expect_contains")] + [
            f"matches /{p}/" for p in listed(self.prompt, "expect_regex")
        ]


@dataclass
class Report:
    evaluation: Evaluation
    models: list[ModelSummary]
    prompts: list[PromptResult]
    runs: list[EvaluationRun]

    @property
    def done(self) -> int:
        return len(self.runs)

    @property
    def total(self) -> int:
        ev = self.evaluation
        return len(ev.prompts) * len(ev.targets) * ev.repeat

    @property
    def percent_done(self) -> int:
        return 100 * self.done // self.total if self.total else 100

    def as_dict(self) -> dict[str, Any]:
        ev = self.evaluation
        return {
            "evaluation": {
                "id": ev.pk,
                "name": ev.name,
                "status": ev.status,
                "error": ev.error,
                "targets": ev.targets,
                "repeat": ev.repeat,
                "concurrency": ev.concurrency,
                "prompts": ev.prompts,
                "created_at": ev.created_at.isoformat(),
                "finished_at": ev.finished_at.isoformat() if ev.finished_at else None,
                "done": self.done,
                "total": self.total,
            },
            "summary": [row.as_dict() for row in self.models],
            "runs": [run_dict(r) for r in self.runs],
        }


RUN_FIELDS = (
    "prompt_index",
    "target",
    "repeat_index",
    "status",
    "checks_passed",
    "checks_total",
    "ttft_ms",
    "latency_ms",
    "input_tokens",
    "output_tokens",
    "cost",
    "chars",
    "message_id",
    "error",
    "content",
)


def run_dict(run: EvaluationRun) -> dict[str, Any]:
    return {
        "prompt_index": run.prompt_index,
        "target": run.target,
        "repeat_index": run.repeat_index,
        "status": run.status,
        "checks_passed": run.checks_passed,
        "checks_total": run.checks_total,
        "ttft_ms": _ms(run.ttft_ms),
        "latency_ms": _ms(run.latency_ms),
        "input_tokens": run.input_tokens,
        "output_tokens": run.output_tokens,
        "cost": str(run.cost),
        "chars": len(run.content),
        "message_id": run.message_id,
        "error": run.error,
        "content": run.content,
    }


def report(evaluation: Evaluation) -> Report:
    """The numbers, per model and per prompt, from the evaluation's runs (one query)."""
    runs = list(evaluation.runs.order_by("prompt_index", "target", "repeat_index"))
    per_target: dict[str, list[EvaluationRun]] = {t: [] for t in evaluation.targets}
    per_cell: dict[tuple[int, str], list[EvaluationRun]] = {}
    for run_ in runs:
        per_target.setdefault(run_.target, []).append(run_)
        per_cell.setdefault((run_.prompt_index, run_.target), []).append(run_)
    prompts = [
        PromptResult(
            index=index,
            prompt=prompt,
            answers=[Answer(t, per_cell.get((index, t), [])) for t in evaluation.targets],
        )
        for index, prompt in enumerate(evaluation.prompts)
    ]
    models = [summarize(target, rows) for target, rows in per_target.items()]
    return Report(evaluation=evaluation, models=models, prompts=prompts, runs=runs)
