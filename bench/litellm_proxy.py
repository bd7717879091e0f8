"""LiteLLM's proxy, in a virtual environment of its own, pointed at the same mock.

The environment is made on the first run under bench/.venv-litellm (gitignored)
and reused after that. The proxy runs with one worker or a worker per core, no
database, telemetry off and the bundled model cost map
(`LITELLM_LOCAL_MODEL_COST_MAP=True`), so it never reaches the network; its access log
is off, as Coppertone's is under the benchmark.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from bench.procs import HOST, ROOT, BenchError

# 1.106 is the release the figures were measured with; later releases need a
# certifi that the package index here does not have yet.
VERSION = "1.106.0"
VENV = ROOT / "bench" / ".venv-litellm"
MASTER_KEY = "sk-bench-litellm"


def ensure_venv(log: Path) -> Path:
    """The proxy's executable, installing `litellm[proxy]` once (minutes, then cached)."""
    marker = VENV / f".installed-{VERSION}"
    executable = VENV / "bin" / "litellm"
    if marker.exists() and executable.exists():
        return executable
    print(f"  installing litellm[proxy]=={VERSION} into {VENV} (first run only)...", flush=True)
    base = getattr(sys, "_base_executable", sys.executable)
    with open(log, "ab") as out:
        steps = [
            [base, "-m", "venv", str(VENV)],
            [str(VENV / "bin" / "pip"), "install", "--quiet", f"litellm[proxy]=={VERSION}"],
        ]
        for argv in steps:
            done = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, timeout=900)
            if done.returncode != 0:
                raise BenchError(f"installing LiteLLM failed: {' '.join(argv)} (see {log})")
    marker.touch()
    return executable


def write_config(workdir: Path, mock_base_url: str, models: list[str]) -> tuple[Path, Path]:
    """The proxy's config (JSON is YAML) and a logging config without the access log."""
    config = {
        "model_list": [
            {
                "model_name": name,
                "litellm_params": {
                    "model": f"openai/{name}",
                    "api_base": mock_base_url,
                    "api_key": "sk-mock",
                },
            }
            for name in models
        ],
        "litellm_settings": {"telemetry": False, "drop_params": True},
        "general_settings": {"master_key": MASTER_KEY},
    }
    config_path = workdir / "litellm.yaml"
    config_path.write_text(json.dumps(config, indent=1))
    logging_config = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": {"format": "%(levelname)s %(name)s: %(message)s"}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "plain"}},
        "loggers": {
            "uvicorn": {"handlers": ["stderr"], "level": "WARNING"},
            "uvicorn.error": {"level": "WARNING"},
            "uvicorn.access": {"handlers": ["stderr"], "level": "WARNING", "propagate": False},
        },
    }
    log_path = workdir / "litellm-logging.json"
    log_path.write_text(json.dumps(logging_config))
    return config_path, log_path


def command(
    executable: Path, config: Path, log_config: Path, port: int, workers: int = 1
) -> list[str]:
    return [
        str(executable),
        "--config",
        str(config),
        "--host",
        HOST,
        "--port",
        str(port),
        "--num_workers",
        str(workers),
        "--log_config",
        str(log_config),
        "--telemetry",
        "False",
    ]


def environment(workdir: Path) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        # No database, no Redis: the proxy runs on its config alone.
        if key not in ("DATABASE_URL", "REDIS_URL", "VIRTUAL_ENV", "PYTHONPATH")
    }
    env.update(
        {
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            "LITELLM_LOG": "ERROR",
            "LITELLM_TELEMETRY": "False",
            "DISABLE_ADMIN_UI": "True",
            "HOME": str(workdir),
            "NO_PROXY": "*",
        }
    )
    env.pop("HTTP_PROXY", None)
    env.pop("HTTPS_PROXY", None)
    return env
