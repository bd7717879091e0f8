"""Replies that outlive their sockets: attaching to one mid-stream, following it elsewhere.

Run by bench.suite on each Coppertone server (attaching on the same process) and, when
the run has PostgreSQL + Redis (the shared reply log), with a second process of the
first server: a reply started on the first is attached to and followed from the second.
The client side of each is in bench/followers.py.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from bench import coppertone
from bench.procs import HOST, BenchError, Processes, cpu_seconds, free_port, loadgen, wait_http

if TYPE_CHECKING:
    from bench.suite import Run, Side

# Longer than the runner's flush interval (llm/replies.py, 50 ms): by then the events the
# starting socket has read are in the shared log, so an attach from elsewhere replays them.
ATTACH_SETTLE = 0.1


def attach(run: Run, side: Side, other: Side) -> dict[str, Any]:
    """Attach to a reply that `side` streams, from a socket on `other` (or on `side`)."""
    plan = run.plan
    spec = {
        "mode": "ws_attach",
        "url": side.ws_url,
        "headers": side.ws_headers,
        "attach_url": other.ws_url,
        "attach_headers": other.ws_headers,
        "ws_message": side.ws_message(plan.attach_tokens, plan.attach_delay_ms),
        "after_seq": plan.attach_after_seq,
        "settle": ATTACH_SETTLE,
        "concurrency": 1,
        "timeout": 30,
    }
    # Warm the path: the first attach on a process connects it to Redis and PostgreSQL.
    loadgen({**spec, "requests": 3, "deadline": 60})
    result = loadgen({**spec, "requests": plan.attaches, "deadline": 30 + plan.attaches})
    took = result.get("attach_ms", {})
    where = "on the same process" if other is side else f"from {other.name}"
    run.say(
        f"  {side.name:<8} WebSocket attach {where} at seq {plan.attach_after_seq}: first "
        f"replayed frame p50 {took.get('p50', 0):6.2f} p95 {took.get('p95', 0):6.2f} ms "
        f"({result['ok']} attaches, {result.get('replayed_tokens_p50') or 0} tokens replayed "
        f"p50)  errors {result['errors']}"
    )
    return result


def follow(run: Run, side: Side, other: Side) -> dict[str, Any]:
    """Long replies run on `side`, followed from `other`: what the followers receive."""
    plan = run.plan
    spec = {
        **run.stream_spec(side, True, plan.follow_tokens),
        "mode": "ws_follow",
        "attach_url": other.ws_url,
        "attach_headers": other.ws_headers,
        "followers": plan.follow_followers,
        "concurrency": plan.follow_starters,
        "warmup": plan.warmup,
        "duration": plan.saturation_seconds,
        "timeout": 60,
        "deadline": plan.warmup + plan.saturation_seconds + 60,
    }
    other_cpu = cpu_seconds(other.pid)
    result = run.charged(side, spec, profile_as="ws_follow")
    result["other_server_cpu_s"] = spent = cpu_seconds(other.pid) - other_cpu
    result["other_server_cpu_share"] = spent / max(result.get("seconds") or 0, 1e-9)
    followers = result.get("followers", {})
    run.say(
        f"  {side.name:<8} {followers.get('sockets', 0)} followers on {other.name} of "
        f"{plan.follow_starters} streams of {plan.follow_tokens} tokens: "
        f"{followers.get('tokens_per_s', 0):9.0f} chunks/s in "
        f"{followers.get('frames_per_s', 0):.0f} frames/s (the starting sockets "
        f"{result['tokens_per_s']:.0f} chunks/s), {followers.get('complete', 0)} complete, "
        f"{followers.get('late', 0)} late, end lag p50 "
        f"{followers.get('end_lag_ms', {}).get('p50', 0):.1f} ms, server cpu "
        f"{result.get('server_cpu_share', 0):.0%} + {result['other_server_cpu_share']:.0%}  "
        f"errors {result['errors']}"
    )
    return result


def across(run: Run, procs: Processes, env: dict[str, str], server: str, side: Side) -> None:
    """A second process on the same PostgreSQL + Redis attaches to and follows replies
    that `side` runs; without them (a smoke run) this part is skipped, and says so."""
    keys = ("ws_attach_cross", "ws_follow_cross")
    if not coppertone.uses_external_database(run.plan.smoke):
        why = (
            "a smoke run uses SQLite and no REDIS_URL"
            if run.plan.smoke
            else "it needs DATABASE_URL and REDIS_URL"
        )
        run.skip(side.name, keys, f"attaching and following across processes ({why})")
        return
    port = free_port()
    proc = procs.start(f"{server}-b", coppertone.command(server, port), env)
    base = f"http://{HOST}:{port}"
    run.say(f"a second Coppertone process under {server} on {base} (pid {proc.pid}):")
    try:
        wait_http(proc, f"{base}/api/v1/health", 60)
        other = replace(
            side,
            name=f"{server}-b",
            base_url=f"{base}/v1",
            pid=proc.pid,
            ws_url=f"ws://{HOST}:{port}/ws/chat/",
            ws_headers={**side.ws_headers, "Origin": base},
        )
        run.step(side.name, keys[0], lambda: attach(run, side, other))
        run.step(side.name, keys[1], lambda: follow(run, side, other))
    except BenchError as exc:
        run.problem(f"{server}-b", exc)
    finally:
        procs.stop(proc)
