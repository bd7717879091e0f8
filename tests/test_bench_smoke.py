"""`python -m bench --smoke` runs end to end, so the benchmark never rots.

The figures of a smoke run mean nothing (tiny counts on a busy machine); what is
checked is that every part ran: the mock answered, Coppertone started under uvicorn
on a fresh database, relayed non-streaming and streaming /v1 requests and WebSocket
turns with every stream complete, attached a second socket to a streaming reply, held
idle sockets, counted its queries, and that the table and JSON were written and nothing
was left running. The cross-process part needs PostgreSQL + Redis: a smoke run skips
it and says so.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, str]:
    out = tmp_path_factory.mktemp("bench") / "latest.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "PYTEST_"))}
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--out", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads(out.read_text()), done.stdout


def test_smoke_run_measures_every_side_without_errors(smoke: tuple[dict, str]) -> None:
    results, _ = smoke
    assert results["problems"] == []
    sides = results["sides"]
    for side in ("direct", "uvicorn"):
        for key in ("nonstream_c1", "nonstream_c4", "stream_ttft", "stream_saturation", "paced"):
            figures = sides[side][key]
            assert figures["errors"] == 0, (side, key, figures.get("error_samples"))
            assert figures["ok"] > 0, (side, key)
    assert sides["direct"]["nonstream_c1"]["rps"] > 0
    assert sides["uvicorn"]["stream_saturation"]["tokens_per_s"] > 0


def test_smoke_streams_arrive_complete_over_v1_and_websocket(smoke: tuple[dict, str]) -> None:
    sides = smoke[0]["sides"]
    for key in ("paced", "ws_paced"):
        run = sides["uvicorn"][key]
        assert run["complete"] == run["concurrency"] == 5
        assert run["incomplete"] == 0
        assert run["ttft_ms"]["p95"] > 0
    assert sides["uvicorn"]["ws_ttft"]["ok"] == 3


def test_smoke_attaches_a_second_socket_to_a_streaming_reply(smoke: tuple[dict, str]) -> None:
    attach = smoke[0]["sides"]["uvicorn"]["ws_attach"]
    assert attach["errors"] == 0, attach["error_samples"]
    assert attach["ok"] == attach["attach_ms"]["n"] == 3
    assert attach["replayed_tokens_p50"] > 0  # the first frame was a replay, not live


def test_smoke_says_it_skipped_the_cross_process_part(smoke: tuple[dict, str]) -> None:
    results, stdout = smoke
    (skipped,) = results["skipped"]
    assert "across processes" in skipped and "no REDIS_URL" in skipped
    assert results["sides"]["uvicorn"]["ws_follow_cross"] == {"skipped": skipped}
    assert f"- {skipped}" in stdout


def test_smoke_holds_signed_in_idle_websockets(smoke: tuple[dict, str]) -> None:
    idle = smoke[0]["sides"]["uvicorn"]["ws_idle"]
    # Anonymous or cross-origin sockets would be closed by the server: all must stay open.
    assert idle["open"] - idle["warm_open"] == idle["requested"] == 20
    assert idle["rss_after_kib"] > 0


def test_smoke_counts_queries_per_turn_for_short_and_long_replies(
    smoke: tuple[dict, str],
) -> None:
    queries = smoke[0]["sides"]["queries"]["per_turn"]
    for key in ("engine_10", "engine_2000"):
        assert queries[key]["status"] == "complete"
        assert queries[key]["queries"] > 0
    assert queries["engine_2000"]["reply_chars"] == 2000 * 5


def test_smoke_prints_the_table_and_targets(smoke: tuple[dict, str]) -> None:
    results, stdout = smoke
    assert "| /v1 non-stream c=1: req/s |" in stdout
    assert "| target | goal | measured | LiteLLM, same run | met |" in stdout
    figures = {t["figure"] for t in results["targets"]}
    # A smoke run has one server: the targets judge it where they would judge the workers.
    assert {"added latency c=1, p50, uvicorn", "queries per turn"} <= figures
    assert results["machine"]["nproc"] >= 1


def test_smoke_leaves_nothing_running(smoke: tuple[dict, str]) -> None:
    pids = smoke[0]["pids"]
    assert len(pids) >= 2  # the mock and the server at least
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists(), f"process {pid} outlived the run"
