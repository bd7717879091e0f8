"""The run's table, its ratios, the performance targets, and the JSON that holds them all."""

from __future__ import annotations

import json
import os
import platform
import resource
from collections.abc import Callable
from pathlib import Path
from typing import Any

SIDES = ("direct", "uvicorn", "uvicorn-workers", "daphne", "litellm", "litellm-workers")
DEPLOYED, LITE_DEPLOYED = "uvicorn-workers", "litellm-workers"  # a worker per core
MARGIN = 0.10  # how much better a server must be on a figure to count as better
Figure = Callable[[dict[str, Any]], float | None]


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.partition(":")[2].strip()
                break
        mem = Path("/proc/meminfo").read_text().splitlines()[0].split()[1]
        memory_gib = round(int(mem) / 1024 / 1024, 1)
    except OSError:
        memory_gib = 0.0
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "memory_gib": memory_gib,
        "python": platform.python_version(),
        "kernel": platform.release(),
        "nofile_limit": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
        # Other work on the machine skews every figure: keep the load beside them.
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def get(data: dict[str, Any], *path: str) -> Any:
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def fmt(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "–"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def recommend(sides: dict[str, Any]) -> tuple[str, str]:
    """The ASGI server that did better on more of the figures where they differ."""
    present = [s for s in ("uvicorn", "daphne") if s in sides]
    if len(present) < 2:
        return (present[0] if present else "uvicorn"), "the only server measured"
    higher = [
        ("non-stream req/s at c=50", ("nonstream_c50", "rps")),
        ("relayed /v1 chunks/s", ("stream_saturation", "tokens_per_s")),
        ("relayed WebSocket chunks/s", ("ws_saturation", "tokens_per_s")),
    ]
    lower = [
        ("p50 at c=1", ("nonstream_c1", "latency_ms", "p50")),
        ("first token c=1", ("stream_ttft", "ttft_ms", "p50")),
        ("KiB per idle WebSocket", ("ws_idle", "kib_per_socket")),
    ]
    wins = {"uvicorn": [], "daphne": []}  # type: dict[str, list[str]]
    for label, path in higher + lower:
        u, d = get(sides["uvicorn"], *path), get(sides["daphne"], *path)
        # Runs on a shared machine swing by several percent: only a clear gap is a win.
        if u is None or d is None or abs(u - d) <= MARGIN * max(abs(u), abs(d)):
            continue
        better_u = u > d if (label, path) in higher else u < d
        wins["uvicorn" if better_u else "daphne"].append(label)
    if len(wins["uvicorn"]) == len(wins["daphne"]):
        return "uvicorn", (
            f"no clear winner (a gap over {MARGIN:.0%} on {sum(map(len, wins.values()))} of 6 "
            "figures); uvicorn runs several workers from one command (--workers)"
        )
    best = "uvicorn" if len(wins["uvicorn"]) > len(wins["daphne"]) else "daphne"
    return best, f"more than {MARGIN:.0%} better on {len(wins[best])} of 6: " + ", ".join(
        wins[best]
    )


def at(*path: str) -> Figure:
    return lambda side: get(side, *path)


def rows(results: dict[str, Any]) -> list[tuple[str, str, Figure, bool]]:
    """(label, key, figure, higher is better) for every line of the table."""
    lines: list[tuple[str, str, Figure, bool]] = []
    for c in results.get("concurrencies", (1, 10, 50)):
        k = f"nonstream_c{c}"
        lines.append((f"/v1 non-stream c={c}: req/s", k, at(k, "rps"), True))
        for p in ("p50", "p95", "p99"):
            lines.append(
                (
                    f"/v1 non-stream c={c}: {p} ms",
                    k,
                    at(k, "latency_ms", p),
                    False,
                )
            )
    top = max(results.get("concurrencies", (50,)))
    lines += [
        (
            f"server CPU per request, c={top}: ms",
            f"nonstream_c{top}",
            at(f"nonstream_c{top}", "server_cpu_ms_per_request"),
            False,
        ),
        (
            "/v1 stream c=1: first token p50 ms",
            "stream_ttft",
            at("stream_ttft", "ttft_ms", "p50"),
            False,
        ),
        (
            "/v1 stream: relayed chunks/s",
            "stream_saturation",
            at("stream_saturation", "tokens_per_s"),
            True,
        ),
        (
            "WebSocket c=1: first token p50 ms",
            "ws_ttft",
            at("ws_ttft", "ttft_ms", "p50"),
            False,
        ),
        (
            "WebSocket: relayed chunks/s",
            "ws_saturation",
            at("ws_saturation", "tokens_per_s"),
            True,
        ),
        (
            "WebSocket: delta frames/s carrying them",
            "ws_saturation",
            at("ws_saturation", "frames_per_s"),
            True,
        ),
    ]
    for key, where in (("ws_attach", "same process"), ("ws_attach_cross", "other process")):
        for p in ("p50", "p95"):
            lines.append(
                (
                    f"WebSocket attach, {where}: first replayed frame {p} ms",
                    key,
                    at(key, "attach_ms", p),
                    False,
                )
            )
    follow = "ws_follow_cross"
    lines += [
        (
            "WebSocket followers, other process: relayed chunks/s",
            follow,
            at(follow, "followers", "tokens_per_s"),
            True,
        ),
        (
            "WebSocket followers, other process: delta frames/s",
            follow,
            at(follow, "followers", "frames_per_s"),
            True,
        ),
        (
            "WebSocket followers: the starting sockets' chunks/s meanwhile",
            follow,
            at(follow, "tokens_per_s"),
            True,
        ),
        (
            "WebSocket followers: their end after the starting socket's, p50 ms",
            follow,
            at(follow, "followers", "end_lag_ms", "p50"),
            False,
        ),
    ]
    for key, what in (("paced", "/v1 streams"), ("ws_paced", "WebSockets")):
        lines += [
            (f"paced {what}: complete", key, at(key, "complete"), True),
            (f"paced {what}: errors", key, at(key, "errors"), False),
            (
                f"paced {what}: first token p50 ms",
                key,
                at(key, "ttft_ms", "p50"),
                False,
            ),
            (
                f"paced {what}: first token p95 ms",
                key,
                at(key, "ttft_ms", "p95"),
                False,
            ),
        ]
    lines += [
        ("idle WebSockets held", "ws_idle", at("ws_idle", "held"), True),
        (
            "idle WebSocket: KiB each",
            "ws_idle",
            at("ws_idle", "kib_per_socket"),
            False,
        ),
    ]
    return lines


def ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or not b:
        return "–"
    return f"{a / b:.2f}x"


def table(results: dict[str, Any]) -> str:
    sides = results.get("sides", {})
    hub = results.get("recommended", "uvicorn")
    present = [s for s in SIDES if s in sides]
    names = {
        "direct": "direct",
        "uvicorn": "Coppertone uvicorn",
        "uvicorn-workers": "Coppertone uvicorn, a worker per core",
        "daphne": "Coppertone daphne",
        "litellm": "LiteLLM",
        "litellm-workers": "LiteLLM, a worker per core",
    }
    head = [
        "figure", *(names[s] for s in present), f"{hub}/direct", f"{hub}/LiteLLM",
        "workers/LiteLLM workers",
    ]  # fmt: skip
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, _key, figure, _higher in rows(results):
        values = {s: figure(sides[s]) for s in present}
        if all(v is None for v in values.values()):
            continue
        digits = 0 if label.endswith(("complete", "errors", "held")) else 2 if " ms" in label else 1
        cells = [fmt(values[s], digits) for s in present]
        cells += [
            ratio(values.get(hub), values.get("direct")),
            ratio(values.get(hub), values.get("litellm")),
            ratio(values.get(DEPLOYED), values.get(LITE_DEPLOYED)),
        ]
        out.append("| " + " | ".join([label, *cells]) + " |")
    queries = sides.get("queries", {}).get("per_turn", {})
    for key, label in (("engine", "turn"), ("v1", "/v1 request")):
        small, large = get(queries, f"{key}_10", "queries"), get(queries, f"{key}_2000", "queries")
        if small is not None:
            out.append(
                f"| DB queries per {label}, 10 / 2,000 tokens | "
                + " | ".join(f"{small} / {large}" if s == hub else "–" for s in present)
                + " | – | – | – |"
            )
    # Measured under the first server only (it loads the model into that process).
    cells = [
        f"{fmt(get(sides[s], 'local_v1', 'events_per_s_p50'))}, "
        f"{fmt(get(sides[s], 'local_v1', 'ttft_ms', 'p50'))}"
        if get(sides[s], "local_v1", "events_per_s_p50")
        else "–"
        for s in present
    ]
    if any(c != "–" for c in cells):
        out.append(
            "| embedded model through /v1: tokens/s, first token ms | "
            + " | ".join(cells)
            + " | – | – | – |"
        )
    local = sides.get("local", {}).get("model", {})
    if get(local, "raw", "tokens_per_s") is not None:
        out.append(
            "| embedded model tokens/s, raw / adapter | "
            + " | ".join(
                f"{fmt(local['raw']['tokens_per_s'])} / {fmt(local['adapter']['tokens_per_s'])}"
                if s == hub
                else "–"
                for s in present
            )
            + " | – | – | – |"
        )
        out.append(
            "| embedded model first token ms, raw / adapter | "
            + " | ".join(
                f"{fmt(local['raw']['ttft_ms'])} / {fmt(local['adapter']['ttft_ms'])}"
                if s == hub
                else "–"
                for s in present
            )
            + " | – | – | – |"
        )
    return "\n".join(out)


def added(sides: dict[str, Any], hub: str, *path: str) -> float | None:
    a, b = get(sides, hub, *path), get(sides, "direct", *path)
    return None if a is None or b is None else a - b


def best_rps(results: dict[str, Any], side: str) -> float | None:
    sides = results.get("sides", {})
    found = [get(sides, side, f"nonstream_c{c}", "rps") for c in results.get("concurrencies", ())]
    return max((v for v in found if v is not None), default=None)


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The performance targets (issue 15), each measured in this run, with LiteLLM's and
    the direct figure beside it: as deployed (a worker per core) where the target says so,
    else the one-process server."""
    sides = results.get("sides", {})
    deployed = DEPLOYED if DEPLOYED in sides else "uvicorn"
    lite = LITE_DEPLOYED if LITE_DEPLOYED in sides else "litellm"
    checks: list[dict[str, Any]] = []

    def check(name: str, goal: str, met: bool | None, shown: str, litellm: str = "–") -> None:
        checks.append(
            {"figure": name, "target": goal, "measured": shown, "met": met, "litellm": litellm}
        )

    ours, theirs = best_rps(results, deployed), best_rps(results, lite)
    direct = best_rps(results, "direct")
    times = ours / theirs if ours and theirs else None
    check(
        f"stored non-stream req/s, {deployed}",
        "at least 5x LiteLLM with as many workers",
        None if times is None else times >= 5,
        f"{fmt(ours)} req/s = {ratio(ours, theirs)} LiteLLM, {ratio(ours, direct)} direct",
        f"{fmt(theirs)} req/s",
    )

    def at_most(
        name: str, limit: float, value: float | None, lite: float | None, sign: str
    ) -> None:
        goal = f"at most {sign}{limit:g} ms"
        met = None if value is None else value <= limit
        check(name, goal, met, f"{sign}{fmt(value, 2)} ms", f"{sign}{fmt(lite, 2)} ms")

    top = max(results.get("concurrencies", (50,)))
    cpu, lite_cpu = (
        get(sides, s, f"nonstream_c{top}", "server_cpu_ms_per_request")
        for s in ("uvicorn", "litellm")
    )
    at_most(f"server CPU per stored turn (one process, c={top})", 3, cpu, lite_cpu, "")
    lat, lite_lat = (added(sides, s, "nonstream_c1", "latency_ms", "p50") for s in (deployed, lite))
    at_most(f"added latency c=1, p50, {deployed}", 4, lat, lite_lat, "+")
    first, lite_first = (added(sides, s, "stream_ttft", "ttft_ms", "p50") for s in (deployed, lite))
    at_most(f"added first token c=1, /v1, {deployed}", 3, first, lite_first, "+")
    # The WebSocket has no direct twin: compare it with the direct /v1 stream.
    ws, direct_first = (
        get(sides, deployed, "ws_ttft", "ttft_ms", "p50"),
        get(sides, "direct", "stream_ttft", "ttft_ms", "p50"),
    )
    ws_first = None if ws is None or direct_first is None else ws - direct_first
    check(
        f"added first token c=1, WebSocket, {deployed}",
        "at most +3 ms",
        None if ws_first is None else ws_first <= 3,
        f"+{fmt(ws_first, 2)} ms",
    )
    for key, what in (("paced", "/v1"), ("ws_paced", "WebSocket")):
        run = get(sides, deployed, key)
        if run is None or "complete" not in run:
            check(f"paced streams ({what}), {deployed}", "p95 added first token <= 100 ms", None,
                  "not measured")  # fmt: skip
            continue
        p95 = (
            added(sides, deployed, key, "ttft_ms", "p95")
            if key == "paced"
            else _vs_direct(sides, deployed, key, "p95")
        )
        total = run.get("concurrency") or run["complete"] + run["incomplete"]
        ok = run["errors"] == 0 and run["complete"] == total and p95 is not None and p95 <= 100
        lite_run = get(sides, lite, key) if key == "paced" else None
        check(
            f"{total} paced streams ({what}), {deployed}",
            "all complete, p95 added first token at most 100 ms",
            ok,
            f"{run['complete']}/{total} complete, {run['errors']} errors, p95 +{fmt(p95, 1)} ms",
            f"{lite_run['complete']}/{total} complete, {lite_run['errors']} errors, p95 "
            f"+{fmt(added(sides, lite, key, 'ttft_ms', 'p95'), 1)} ms"
            if lite_run and "complete" in lite_run
            else "–",
        )
    for key, what in (("stream_saturation", "/v1"), ("ws_saturation", "WebSocket")):
        rate = get(sides, "uvicorn", key, "tokens_per_s")
        check(
            f"relayed chunks/s, one process ({what})",
            "no lower than 42,000",
            None if rate is None else rate >= 42000,
            f"{fmt(rate)}/s",
            f"{fmt(get(sides, 'litellm', key, 'tokens_per_s'))}/s" if key == "stream_saturation"
            else "–",
        )  # fmt: skip
    queries = get(sides, "queries", "per_turn")
    if queries:
        small, large = get(queries, "engine_10", "queries"), get(queries, "engine_2000", "queries")
        v1 = get(queries, "v1_10", "queries")
        check(
            "queries per turn",
            "no higher than 5",
            None if large is None else small == large and large <= 5,
            f"{small} and {large} per turn (10 and 2,000 tokens); {v1} per /v1 request",
        )
    return checks


def _vs_direct(sides: dict[str, Any], hub: str, key: str, p: str) -> float | None:
    a, b = get(sides, hub, key, "ttft_ms", p), get(sides, "direct", "paced", "ttft_ms", p)
    return None if a is None or b is None else a - b


def target_table(checks: list[dict[str, Any]]) -> str:
    out = ["| target | goal | measured | LiteLLM, same run | met |", "|---|---|---|---|---|"]
    for c in checks:
        met = "–" if c["met"] is None else ("yes" if c["met"] else "**no**")
        out.append(
            f"| {c['figure']} | {c['target']} | {c['measured']} | {c.get('litellm', '–')} | {met} |"
        )
    return "\n".join(out)


def render(results: dict[str, Any]) -> str:
    m = results["machine"]
    lines = [
        f"Coppertone benchmark ({'smoke' if results.get('smoke') else 'full'} run, "
        f"{results.get('seconds', 0):.0f} s, {results.get('database', '')})",
        f"machine: {m['nproc']} cores, {m['cpu']}, {m['memory_gib']} GiB, Python {m['python']}, "
        f"ulimit -n {m['nofile_limit']}, load average at the end {m['load_average']}",
        f"recommended ASGI server: {results.get('recommended')} ({results.get('why')})",
        "",
        table(results),
        "",
        target_table(results.get("targets", [])),
    ]
    if results.get("problems"):
        lines += ["", "problems:"] + [f"- {p}" for p in results["problems"]]
    if results.get("skipped"):
        lines += ["", "skipped:"] + [f"- {p}" for p in results["skipped"]]
    return "\n".join(lines)


def finish(results: dict[str, Any], out: Path) -> str:
    results["recommended"], results["why"] = recommend(results.get("sides", {}))
    results["targets"] = targets(results)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1, default=str))
    text = render(results)
    out.with_suffix(".md").write_text(text + "\n")
    return text
