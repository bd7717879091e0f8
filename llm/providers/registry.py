"""PROVIDERS: every provider kind, its adapter class and its metadata.

Forms, the settings page, the admin and model-name auto-detection all read this
table; nothing else branches on a kind. A new provider is one adapter module and
one entry here.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module

from llm.providers.base import Provider, ProviderOptions, ProviderSpec

OPENAI = "llm.providers.openai.OpenAIProvider"
# Replies at once a local server is given by default: its parallel slots (llama.cpp's
# --parallel, Ollama's OLLAMA_NUM_PARALLEL) are few, and the rest would only queue.
LOCAL_SERVER_REPLIES = 8
# ProviderSpec.vision_models for servers whose model (or deployment) is the person's to
# choose: the server decides whether it reads images, and says so if not.
ANY_MODEL = ("",)


@dataclass(frozen=True, slots=True)
class Entry:
    spec: ProviderSpec
    adapter: str  # dotted path, imported on first use so that a kind costs nothing until used


def _entry(adapter: str, **spec: object) -> tuple[str, Entry]:
    s = ProviderSpec(**spec)  # type: ignore[arg-type]
    return s.kind, Entry(s, adapter)


PROVIDERS: dict[str, Entry] = dict(
    [
        _entry(
            "llm.providers.local.LocalProvider",
            kind="local",
            label="Local model",
            description="SmolLM2 running inside Coppertone: no key, no network.",
            default_model="SmolLM2-135M-Instruct",
            needs_key=False,
            has_base_url=False,
            default_max_concurrent=1,  # one llama.cpp context per process
        ),
        _entry(
            OPENAI,
            kind="openai",
            label="OpenAI",
            description="GPT models through the OpenAI API.",
            default_model="gpt-4o",
            default_base_url="https://api.openai.com/v1",
            model_prefixes=("gpt-", "o1", "o3", "o4", "chatgpt-"),
            # https://platform.openai.com/docs/guides/images-vision
            vision_models=(
                "gpt-4o",
                "gpt-4.1",
                "gpt-4.5",
                "gpt-4-turbo",
                "gpt-5",
                "o3",
                "o4",
                "chatgpt-4o",
            ),
        ),
        _entry(
            "llm.providers.anthropic.AnthropicProvider",
            kind="anthropic",
            label="Anthropic",
            description="Claude models through the Messages API.",
            default_model="claude-sonnet-4-5",
            default_base_url="https://api.anthropic.com",
            model_prefixes=("claude-",),
            vision_models=("claude-",),
        ),
        _entry(
            "llm.providers.gemini.GeminiProvider",
            kind="gemini",
            label="Google Gemini",
            description="Gemini models through the Generative Language API.",
            default_model="gemini-2.0-flash",
            default_base_url="https://generativelanguage.googleapis.com/v1beta",
            model_prefixes=("gemini-",),
            vision_models=("gemini-",),
        ),
        _entry(
            OPENAI,
            kind="qwen",
            label="Qwen (DashScope)",
            description="Alibaba Cloud's Qwen models in DashScope's OpenAI-compatible mode.",
            default_model="qwen-max",
            default_base_url="https://dashscope-intl.aliyuncs.com/compatible-mode/v1",
            model_prefixes=("qwen",),
            vision_models=("qwen-vl", "qwen2-vl", "qwen2.5-vl", "qwen3-vl", "qvq"),
            thinking_switch="enable_thinking",
        ),
        _entry(
            OPENAI,
            kind="huggingface",
            label="Hugging Face",
            description="Open models through the Hugging Face router (OpenAI-compatible).",
            default_model="meta-llama/Llama-3.3-70B-Instruct",
            default_base_url="https://router.huggingface.co/v1",
            vision_models=ANY_MODEL,
        ),
        _entry(
            OPENAI,
            kind="azure_openai",
            label="Azure OpenAI",
            description="Your Azure OpenAI resource; the model is the deployment name.",
            default_model="gpt-4o",
            default_base_url="",
            extra_fields=("api_version",),
            vision_models=ANY_MODEL,
        ),
        _entry(
            OPENAI,
            kind="ollama",
            label="Ollama",
            description="Models served by Ollama on your own machine.",
            default_model="llama3.2",
            default_base_url="http://127.0.0.1:11434/v1",
            needs_key=False,
            default_max_concurrent=LOCAL_SERVER_REPLIES,
            keep_alive="ollama",
            thinking_switch="reasoning_effort",
            vision_models=ANY_MODEL,
        ),
        _entry(
            OPENAI,
            kind="lmstudio",
            label="LM Studio",
            description="The model loaded in LM Studio's local server.",
            default_model="local-model",
            default_base_url="http://127.0.0.1:1234/v1",
            needs_key=False,
            default_max_concurrent=LOCAL_SERVER_REPLIES,
            keep_alive="one_token",
            thinking_switch="chat_template_kwargs",
            vision_models=ANY_MODEL,
        ),
        _entry(
            OPENAI,
            kind="llamacpp",
            label="llama.cpp server",
            description="The OpenAI-compatible endpoint of llama.cpp's llama-server.",
            default_model="default",
            default_base_url="http://127.0.0.1:8080/v1",
            needs_key=False,
            default_max_concurrent=LOCAL_SERVER_REPLIES,
            keep_alive="one_token",
            thinking_switch="chat_template_kwargs",
            vision_models=ANY_MODEL,
        ),
        _entry(
            OPENAI,
            kind="vllm",
            label="vLLM",
            description="A vLLM OpenAI-compatible server.",
            default_model="default",
            default_base_url="http://127.0.0.1:8000/v1",
            needs_key=False,
            default_max_concurrent=LOCAL_SERVER_REPLIES,
            keep_alive="one_token",
            thinking_switch="chat_template_kwargs",
            vision_models=ANY_MODEL,
        ),
        _entry(
            OPENAI,
            kind="openai_compatible",
            label="OpenAI-compatible",
            description="Any server that speaks the OpenAI chat API, at a base URL you give.",
            default_model="default",
            default_base_url="",
            needs_key=False,
            default_max_concurrent=LOCAL_SERVER_REPLIES,
            keep_alive="one_token",
            thinking_switch="chat_template_kwargs",
            vision_models=ANY_MODEL,
        ),
    ]
)

LOCAL = "local"


def spec(kind: str) -> ProviderSpec:
    return PROVIDERS[kind].spec


def choices() -> list[tuple[str, str]]:
    return [(kind, entry.spec.label) for kind, entry in PROVIDERS.items()]


def kind_for_model(model: str) -> str | None:
    """The kind whose model names look like `model` (`claude-…` is Anthropic), if any."""
    name = model.lower()
    for kind, entry in PROVIDERS.items():
        if any(name.startswith(prefix) for prefix in entry.spec.model_prefixes):
            return kind
    return None


def sees_images(kind: str, model: str) -> bool:
    """Whether `model` of `kind` reads images (ProviderSpec.vision_models)."""
    name = model.lower()
    return any(name.startswith(prefix) for prefix in spec(kind).vision_models)


def vision_choices() -> str:
    """The models that read images, in words: "OpenAI gpt-4o…, gpt-4.1…; Anthropic claude-…"."""
    named, any_model = [], []
    for entry in PROVIDERS.values():
        prefixes = entry.spec.vision_models
        if prefixes == ANY_MODEL:
            any_model.append(entry.spec.label)
        elif prefixes:
            named.append(f"{entry.spec.label} {', '.join(p + '…' for p in prefixes)}")
    if any_model:
        named.append(f"a vision model on {', '.join(any_model)}")
    return "; ".join(named)


def create(kind: str, options: ProviderOptions) -> Provider:
    entry = PROVIDERS[kind]
    module_name, _, class_name = entry.adapter.rpartition(".")
    adapter: type[Provider] = getattr(import_module(module_name), class_name)
    return adapter(entry.spec, options)
