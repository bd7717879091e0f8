"""Hole 12: the `.env` file that settings read never reaches git or a Docker image."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_dot_env_is_ignored_by_git() -> None:
    for name in (".env", ".env.production"):
        result = subprocess.run(["git", "check-ignore", "--no-index", "-q", name], cwd=ROOT)
        assert result.returncode == 0, name


def test_dot_env_is_kept_out_of_the_docker_build_context() -> None:
    patterns = (ROOT / ".dockerignore").read_text().split()
    assert ".env" in patterns and ".env.*" in patterns
