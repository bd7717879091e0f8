"""`manage.py chat`: talk to a model from the terminal, the reply streamed as it comes.

    manage.py chat --user alice "What is a sonnet?"       one message
    echo "Summarise this" | manage.py chat --user alice    one message from stdin
    manage.py chat --user alice --provider openai          a conversation (stdin is a tty)

Ctrl-C while a reply streams stops it and keeps the partial reply (stored `stopped`);
Ctrl-C or Ctrl-D at the prompt ends the session. The reply goes to stdout, the
tokens/cost line and errors to stderr, so the reply can be piped.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any, TextIO

from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.models import User
from llm import replies
from llm.events import TextDelta, ThinkingDelta, TurnError, TurnFinished, TurnStarted, TurnWaiting
from llm.turns import Turn, run_turn


class Command(BaseCommand):
    help = "Talk to a model from the terminal (streamed). Ctrl-C stops a reply and keeps it."
    stealth_options = ("stdin",)

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("message", nargs="?", help="What to say (default: read stdin).")
        parser.add_argument("--user", required=True, help="Whose account to talk as (username).")
        parser.add_argument("--provider", help="Provider kind, e.g. openai, anthropic, local.")
        parser.add_argument("--model", help="Model name, e.g. gpt-4o (picks the provider too).")
        parser.add_argument(
            "--conversation", type=int, help="Continue this conversation (its id) instead."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        user = User.objects.filter(username=options["user"], is_active=True).first()
        if user is None:
            raise CommandError(f"There is no active user called {options['user']!r}.")
        self.user = user
        self.provider: str | None = options["provider"]
        self.model: str | None = options["model"]
        self.conversation_id: int | None = options["conversation"]
        stdin: TextIO = options.get("stdin") or sys.stdin

        with asyncio.Runner() as runner:
            if options["message"] is not None:
                self._one(runner, options["message"])
            elif stdin.isatty():
                self._interactive(runner, stdin)
            else:
                self._one(runner, stdin.read())

    def _one(self, runner: asyncio.Runner, text: str) -> None:
        try:
            result = self._say(runner, text)
        except TurnError as error:
            raise CommandError(error.message) from None
        if result is not None and result.status == "error":
            raise CommandError("The reply failed; the text so far is kept.")

    def _interactive(self, runner: asyncio.Runner, stdin: TextIO) -> None:
        self.stderr.write("Type a message; Enter sends. Ctrl-C stops a reply, Ctrl-D quits.")
        while True:
            self.stdout.write("you> ", ending="")
            self.stdout.flush()
            try:
                line = stdin.readline()
            except KeyboardInterrupt:
                line = ""
            if not line:
                self.stdout.write("")
                return
            if not line.strip():
                continue
            try:
                self._say(runner, line.rstrip("\n"))
            except TurnError as error:
                self.stderr.write(error.message)

    def _say(self, runner: asyncio.Runner, text: str) -> TurnFinished | None:
        turn = run_turn(
            self.user,
            text,
            conversation_id=self.conversation_id,
            provider=self.provider,
            model=self.model,
            render_html=False,
        )
        try:
            runner.run(self._stream(turn))
        except KeyboardInterrupt:
            self.stdout.write("")
            kept = len(turn.result.content) if turn.result else 0
            self.stderr.write(f"[stopped: the {kept} characters so far are kept]")
            return turn.result
        result = turn.result
        if result is not None:
            self._report(result)
        return result

    async def _stream(self, turn: Turn) -> None:
        write, flush = self.stdout.write, self.stdout.flush
        # owned: Ctrl-C (which cancels this task) stops the reply and keeps its text.
        async with replies.owned(turn) as reply:
            async for _seq, event in reply.follow():
                if type(event) is TextDelta:
                    write(event.text, ending="")
                    flush()
                elif type(event) is ThinkingDelta:
                    write(self.style.HTTP_NOT_MODIFIED(event.text), ending="")  # dimmed
                    flush()
                elif isinstance(event, TurnWaiting):
                    self.stderr.write(f"[waiting: {event.ahead} ahead]")
                elif isinstance(event, TurnStarted):
                    # Later messages continue the same conversation.
                    self.conversation_id = event.conversation_id

    def _report(self, result: TurnFinished) -> None:
        self.stdout.write("")
        for attempt in result.attempts:
            self.stderr.write(
                f"[{attempt.provider}/{attempt.model} did not answer: {attempt.error.message}]"
            )
        if result.error:
            self.stderr.write(f"[{result.error.code}] {result.error.message}")
        self.stderr.write(
            f"[{result.provider}/{result.model} · {result.input_tokens} in, "
            f"{result.output_tokens} out · ${result.cost} · {result.latency_ms / 1000:.1f} s · "
            f"conversation {result.conversation_id}]"
        )
