"""The embedded model through the adapter against raw llama-cpp-python.

Same GGUF, same prompt, same max tokens, same threads and sampling seed. "Raw" is
`Llama.create_chat_completion(stream=True)` in a plain loop; "adapter" is
`LocalProvider.stream()` consumed from an asyncio loop, so it includes the worker
thread, the hand-off to the loop and the FIFO gate. Each run starts from an empty
KV cache (`Llama.reset()`), so the first token includes evaluating the whole
prompt, as in a new conversation. Runs alternate raw / adapter so that noise from
other processes falls on both; the median of the runs is reported, and the
first-token cost the adapter adds is the median of the paired differences (raw
and adapter run back to back).

Evaluating the prompt takes hundreds of milliseconds here and swings with the
machine's load, which hides a few milliseconds of adapter cost. So each pair is
followed by a warm pair (the same prompt again, already in the KV cache: the
first token is one decode step), whose paired difference is the adapter's own
first-token cost: `added_ttft_warm_ms`.

    python -m bench.local_model [--runs 7] [--max-tokens 128] [--model PATH]

`measure()` is importable with no side effects (bench/__main__.py uses it).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from dataclasses import dataclass
from typing import Any

from llm.providers import registry
from llm.providers.base import ChatMessage, ChatRequest, Credentials, ProviderOptions, TextDelta
from llm.providers.local import LocalProvider, load

PROMPT = "Write a long story about a lighthouse keeper who finds a message in a bottle."
TEMPERATURE = 0.7


@dataclass(frozen=True, slots=True)
class Run:
    tokens: int  # streamed text chunks: one per token for this model
    ttft_s: float  # call to first text
    stream_s: float  # first text to last text
    total_s: float  # call to the end of the stream
    cpu_s: float  # CPU time of the whole process (every thread) for the run

    @property
    def tokens_per_s(self) -> float:
        """Streaming rate after the first token: what a reader sees the text grow at."""
        return (self.tokens - 1) / self.stream_s if self.tokens > 1 and self.stream_s else 0.0


def _run(started: float, cpu: float, first: float | None, last: float, tokens: int) -> Run:
    ended, cpu_s = time.perf_counter(), time.process_time() - cpu
    first = first if first is not None else ended
    return Run(
        tokens=tokens,
        ttft_s=first - started,
        stream_s=last - first,
        total_s=ended - started,
        cpu_s=cpu_s,
    )


def _raw_run(llama: Any, prompt: str, max_tokens: int, cold: bool = True) -> Run:
    if cold:
        llama.reset()
    tokens, first, last = 0, None, 0.0
    started, cpu = time.perf_counter(), time.process_time()
    for chunk in llama.create_chat_completion(
        [{"role": "user", "content": prompt}],
        max_tokens=max_tokens,
        temperature=TEMPERATURE,
        stream=True,
    ):
        if chunk["choices"][0]["delta"].get("content"):
            last = time.perf_counter()
            if first is None:
                first = last
            tokens += 1
    return _run(started, cpu, first, last, tokens)


async def _adapter_run(
    provider: LocalProvider, prompt: str, max_tokens: int, cold: bool = True
) -> Run:
    if cold:
        (await provider.model()).llama.reset()
    request = ChatRequest(
        model="",
        messages=(ChatMessage("user", prompt),),
        temperature=TEMPERATURE,
        max_tokens=max_tokens,
    )
    tokens, first, last = 0, None, 0.0
    started, cpu = time.perf_counter(), time.process_time()
    async for event in provider.stream(request, Credentials()):
        if isinstance(event, TextDelta) and event.text:
            last = time.perf_counter()
            if first is None:
                first = last
            tokens += 1
    return _run(started, cpu, first, last, tokens)


def _summary(runs: list[Run]) -> dict[str, float]:
    return {
        "tokens_per_s": round(statistics.median(r.tokens_per_s for r in runs), 1),
        "ttft_ms": round(statistics.median(r.ttft_s for r in runs) * 1000, 1),
        # The best run: what the code can do when nothing else wants the CPU.
        "best_tokens_per_s": round(max(r.tokens_per_s for r in runs), 1),
        "best_ttft_ms": round(min(r.ttft_s for r in runs) * 1000, 1),
        "tokens": statistics.median(r.tokens for r in runs),
        "total_s": round(statistics.median(r.total_s for r in runs), 3),
        # CPU seconds per run barely move when other processes compete for the cores,
        # so their ratio shows the adapter's own cost even on a busy machine.
        "cpu_s": round(statistics.median(r.cpu_s for r in runs), 3),
    }


def measure(
    runs: int = 7,
    max_tokens: int = 128,
    prompt: str = PROMPT,
    options: ProviderOptions | None = None,
) -> dict[str, Any]:
    """Raw llama-cpp-python vs the adapter, median of `runs` each; printed and returned.

    Call it from synchronous code (it runs its own event loop for the adapter).
    """
    from llama_cpp import Llama

    options = options or ProviderOptions()
    provider = registry.create("local", options)
    assert isinstance(provider, LocalProvider)
    model = load(options)  # the adapter's model, loaded once as in a server process
    raw = Llama(
        model_path=str(model.path),
        n_ctx=model.context,
        n_threads=model.threads,
        n_threads_batch=model.threads,
        verbose=False,
    )
    try:
        # One warm-up each: first-call costs (page faults, thread pools) are not speed.
        _raw_run(raw, prompt, 8)
        asyncio.run(_adapter_run(provider, prompt, 8))
        raw_runs, adapter_runs, warm_pairs = [], [], []
        for _ in range(runs):
            raw_runs.append(_raw_run(raw, prompt, max_tokens))
            adapter_runs.append(asyncio.run(_adapter_run(provider, prompt, max_tokens)))
            warm_pairs.append(
                (
                    _raw_run(raw, prompt, 2, cold=False),
                    asyncio.run(_adapter_run(provider, prompt, 2, cold=False)),
                )
            )
    finally:
        raw.close()
    result: dict[str, Any] = {
        "model": model.name,
        "threads": model.threads,
        "max_tokens": max_tokens,
        "runs": runs,
        "raw": _summary(raw_runs),
        "adapter": _summary(adapter_runs),
    }
    result["tokens_per_s_ratio"] = round(
        result["adapter"]["tokens_per_s"] / result["raw"]["tokens_per_s"], 3
    )
    result["cpu_ratio"] = round(result["adapter"]["cpu_s"] / result["raw"]["cpu_s"], 3)
    result["best_tokens_per_s_ratio"] = round(
        result["adapter"]["best_tokens_per_s"] / result["raw"]["best_tokens_per_s"], 3
    )
    # Paired (same moment, same prompt) differences: far steadier on a shared machine
    # than the difference of two medians, each of which swings with other processes.
    result["added_ttft_ms"] = round(
        statistics.median(
            (a.ttft_s - r.ttft_s) * 1000 for r, a in zip(raw_runs, adapter_runs, strict=True)
        ),
        1,
    )
    result["raw_ttft_warm_ms"] = round(statistics.median(r.ttft_s for r, _ in warm_pairs) * 1000, 1)
    result["adapter_ttft_warm_ms"] = round(
        statistics.median(a.ttft_s for _, a in warm_pairs) * 1000, 1
    )
    result["added_ttft_warm_ms"] = round(
        statistics.median((a.ttft_s - r.ttft_s) * 1000 for r, a in warm_pairs), 1
    )
    _print(result)
    return result


def _print(result: dict[str, Any]) -> None:
    print(
        f"local model {result['model']}, {result['threads']} thread(s), "
        f"{result['max_tokens']} max tokens, median of {result['runs']} runs"
    )
    for side in ("raw", "adapter"):
        figures = result[side]
        print(
            f"  {side:<8} {figures['tokens_per_s']:6.1f} tokens/s  "
            f"first token {figures['ttft_ms']:6.1f} ms  ({figures['tokens']:.0f} tokens, "
            f"{figures['total_s']:.2f} s, {figures['cpu_s']:.2f} s CPU; "
            f"best run {figures['best_tokens_per_s']:.1f} tokens/s, "
            f"{figures['best_ttft_ms']:.1f} ms)"
        )
    print(
        f"  adapter/raw tokens/s {result['tokens_per_s_ratio']:.1%} "
        f"(best runs {result['best_tokens_per_s_ratio']:.1%}), "
        f"first token {result['added_ttft_ms']:+.1f} ms (median of paired runs), "
        f"CPU time {result['cpu_ratio']:.1%}"
    )
    print(
        f"  prompt already cached: first token raw {result['raw_ttft_warm_ms']:.1f} ms, "
        f"adapter {result['adapter_ttft_warm_ms']:.1f} ms, "
        f"added {result['added_ttft_warm_ms']:+.1f} ms (median of paired runs)"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=0, help="0: the adapter's default")
    parser.add_argument("--model", default="", help="a GGUF file (default: bundled SmolLM2)")
    args = parser.parse_args(argv)
    options = ProviderOptions(local_model_path=args.model, local_model_threads=args.threads)
    measure(runs=args.runs, max_tokens=args.max_tokens, options=options)


if __name__ == "__main__":
    main()
