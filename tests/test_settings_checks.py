"""Production configuration: missing pieces are explained; a good one passes --deploy."""

from __future__ import annotations

import base64
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run_check(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "REDIS_URL"))}
    return subprocess.run(
        [sys.executable, "manage.py", "check", *args],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def production_env(tmp_path: Path) -> dict[str, str]:
    return {
        "DEBUG": "off",
        "DATA_DIR": str(tmp_path),
        "SECRET_KEY": secrets.token_urlsafe(50),
        "LLM_ENCRYPTION_KEYS": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
        "ALLOWED_HOSTS": "chat.example.com",
        "CSRF_TRUSTED_ORIGINS": "https://chat.example.com",
        "DATABASE_URL": "postgres://coppertone:pw@db.example.com:5432/coppertone",
        "REDIS_URL": "redis://cache.example.com:6379/0",
    }


def test_check_deploy_is_clean_with_production_settings(production_env: dict[str, str]) -> None:
    result = run_check(production_env, "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_missing_production_secrets_are_explained(
    production_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**production_env, "SECRET_KEY": "", "LLM_ENCRYPTION_KEYS": ""}
    result = run_check(env)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "coppertone.E001" in output and "SECRET_KEY" in output
    assert "coppertone.E002" in output and "token_bytes(32)" in output
    # Production never generates its own secrets.
    assert not (tmp_path / "secret_key").exists() and not (tmp_path / "encryption_key").exists()


def test_bad_encryption_key_is_explained(production_env: dict[str, str]) -> None:
    result = run_check({**production_env, "LLM_ENCRYPTION_KEYS": "dG9vIHNob3J0"})
    assert result.returncode != 0
    assert "coppertone.E003" in result.stdout + result.stderr


def test_sqlite_and_no_redis_warn_in_production(production_env: dict[str, str]) -> None:
    env = {**production_env, "DATABASE_URL": f"sqlite:///{production_env['DATA_DIR']}/db.sqlite3"}
    env.pop("REDIS_URL")
    result = run_check(env, "--fail-level", "WARNING")
    assert "coppertone.W001" in result.stdout + result.stderr
    assert "coppertone.W002" in result.stdout + result.stderr


def test_development_generates_private_secrets(tmp_path: Path) -> None:
    result = run_check(
        {"DEBUG": "on", "DATA_DIR": str(tmp_path), "SECRET_KEY": "", "LLM_ENCRYPTION_KEYS": ""}
    )
    assert result.returncode == 0, result.stderr
    for name in ("secret_key", "encryption_key"):
        path = tmp_path / name
        assert path.stat().st_mode & 0o777 == 0o600
        assert str(path) in result.stderr


def test_missing_local_model_is_a_warning_at_startup(tmp_path: Path) -> None:
    env = {
        "DEBUG": "on",
        "DATA_DIR": str(tmp_path),
        "LOCAL_MODEL_PATH": str(tmp_path / "gone.gguf"),
    }
    result = run_check(env)
    output = result.stdout + result.stderr
    assert "coppertone.W003" in output and "LOCAL_MODEL_PATH" in output
