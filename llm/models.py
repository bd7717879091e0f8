from __future__ import annotations

import dataclasses
import uuid
from decimal import Decimal

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone

from llm import crypto
from llm.providers import registry
from llm.providers.base import Credentials, Provider, ProviderOptions

DEFAULT_TEMPERATURE = 0.7
DEFAULT_MAX_TOKENS = 1024
TIMEOUT_FIELDS = ("connect_timeout", "first_byte_timeout", "idle_timeout")


def provider_options() -> ProviderOptions:
    """The operator's LLM_* settings, as every adapter takes them."""
    return ProviderOptions(
        connect_timeout=settings.LLM_CONNECT_TIMEOUT,
        first_byte_timeout=settings.LLM_FIRST_BYTE_TIMEOUT,
        idle_timeout=settings.LLM_IDLE_TIMEOUT,
        max_retries=settings.LLM_MAX_RETRIES,
        max_retry_wait=settings.LLM_MAX_RETRY_WAIT,
        turn_deadline=settings.LLM_TURN_DEADLINE_SECONDS,
        max_sse_line_bytes=settings.LLM_MAX_SSE_LINE_BYTES,
        max_event_bytes=settings.LLM_MAX_EVENT_BYTES,
        max_reply_chars=settings.LLM_MAX_REPLY_CHARS,
        max_body_bytes=settings.LLM_MAX_BODY_BYTES,
        private_hosts=tuple(settings.LLM_PRIVATE_HOSTS),
        local_model_path=settings.LOCAL_MODEL_PATH,
        local_model_threads=settings.LOCAL_MODEL_THREADS,
        local_model_context=settings.LOCAL_MODEL_CONTEXT,
    )


class Thinking(models.TextChoices):
    AUTO = "auto", "The model's default"
    SHOW = "show", "Think, and show the thinking"
    SKIP = "skip", "Skip thinking where the API allows"


class ProviderConfig(models.Model):
    """One person's settings for one provider kind, with their API key encrypted."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="provider_configs"
    )
    kind = models.CharField(max_length=32, choices=registry.choices)
    encrypted_key = models.TextField(blank=True, editable=False)
    key_id = models.CharField(max_length=16, blank=True, editable=False)
    key_hint = models.CharField(max_length=4, blank=True, editable=False)
    base_url = models.CharField(max_length=500, blank=True)
    api_version = models.CharField(max_length=32, blank=True)
    model = models.CharField(max_length=200, blank=True)
    temperature = models.FloatField(
        default=DEFAULT_TEMPERATURE, validators=[MinValueValidator(0.0), MaxValueValidator(2.0)]
    )
    max_tokens = models.PositiveIntegerField(
        default=DEFAULT_MAX_TOKENS, validators=[MinValueValidator(1), MaxValueValidator(32000)]
    )
    system_prompt = models.TextField(blank=True)
    enabled = models.BooleanField(default=True)
    # Sampling sent only where the provider's API takes it (llm/providers/*).
    top_p = models.FloatField(
        null=True, blank=True, validators=[MinValueValidator(0.0), MaxValueValidator(1.0)]
    )
    stop = models.JSONField(default=list, blank=True, help_text="Up to 4 stop sequences.")
    thinking = models.CharField(
        max_length=8, choices=Thinking.choices, default=Thinking.AUTO, db_default=Thinking.AUTO
    )
    # Per-configuration timeouts in seconds; empty uses the operator's LLM_* ones.
    connect_timeout = models.FloatField(null=True, blank=True)
    first_byte_timeout = models.FloatField(null=True, blank=True)
    idle_timeout = models.FloatField(null=True, blank=True)
    # Replies at once to this server across everyone; empty: the kind's default
    # (llm/providers/registry.py), 0: no cap.
    max_concurrent = models.PositiveIntegerField(null=True, blank=True)
    # Keep a local server's model loaded: a ping every N minutes (0: off).
    keep_alive_minutes = models.PositiveIntegerField(default=0, db_default=0)
    keep_alive_due = models.DateTimeField(null=True, blank=True)
    keep_alive_at = models.DateTimeField(null=True, blank=True)
    keep_alive_result = models.CharField(max_length=300, blank=True, db_default="")
    # Exact-match reply cache, this person's own (llm/reply_cache.py).
    cache_replies = models.BooleanField(default=False, db_default=False)
    # The circuit breaker for this configuration (llm/breakers.py).
    failures = models.PositiveIntegerField(default=0, db_default=0, editable=False)
    open_until = models.DateTimeField(null=True, blank=True, editable=False)
    failure = models.TextField(blank=True, db_default="", editable=False)
    last_verified_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "kind"], name="one_config_per_user_and_kind")
        ]
        ordering = ["kind"]

    def __str__(self) -> str:
        return f"{self.user} · {self.label}"

    @property
    def label(self) -> str:
        return registry.spec(self.kind).label

    @property
    def has_key(self) -> bool:
        return bool(self.encrypted_key)

    @property
    def effective_model(self) -> str:
        return self.model or registry.spec(self.kind).default_model

    @property
    def effective_base_url(self) -> str:
        return self.base_url or registry.spec(self.kind).default_base_url

    @property
    def destination(self) -> str:
        """Where the key is sent, as stored (an empty base URL is the registry's default)."""
        return f"{self.base_url}|{self.api_version}"

    def _aad(self) -> bytes:
        # The destination is sealed with the key: a row whose address changed without
        # the key being entered again cannot send the key anywhere (llm/crypto.py).
        return crypto.associated_data(self.user_id, self.kind, self.destination)

    def set_api_key(self, plaintext: str) -> None:
        """Encrypt and store `plaintext`; keep only its last 4 characters in the clear."""
        if not plaintext:
            self.encrypted_key = self.key_id = self.key_hint = ""
            return
        sealed = crypto.KeyRing.from_settings().encrypt(plaintext, self._aad())
        self.encrypted_key, self.key_id, self.key_hint = (
            sealed.ciphertext,
            sealed.key_id,
            plaintext[-4:],
        )

    def api_key(self, ring: crypto.KeyRing | None = None) -> str:
        """The plaintext key, for the one call that uses it. Raises crypto.DecryptError."""
        if not self.encrypted_key:
            return ""
        ring = ring or crypto.KeyRing.from_settings()
        return ring.decrypt(crypto.Sealed(self.key_id, self.encrypted_key), self._aad())

    def reencrypt(self, ring: crypto.KeyRing) -> bool:
        """Seal the key again under the ring's first key. True when it changed."""
        if not self.encrypted_key or ring.is_current(
            crypto.Sealed(self.key_id, self.encrypted_key)
        ):
            return False
        sealed = ring.encrypt(self.api_key(ring), self._aad())
        self.encrypted_key, self.key_id = sealed.ciphertext, sealed.key_id
        return True

    def credentials(self) -> Credentials:
        return Credentials(
            api_key=self.api_key(), base_url=self.effective_base_url, api_version=self.api_version
        )

    def failing_label(self) -> str:
        """ "failing, retrying at 14:05" while this configuration's breaker is open, else ""."""
        if self.open_until is None or self.open_until <= timezone.now():
            return ""
        return f"failing, retrying at {timezone.localtime(self.open_until):%H:%M}"

    def options(self) -> ProviderOptions:
        """The operator's options with this configuration's own timeouts, where set."""
        options = provider_options()
        mine = {name: getattr(self, name) for name in TIMEOUT_FIELDS}
        mine = {name: value for name, value in mine.items() if value is not None}
        return dataclasses.replace(options, **mine) if mine else options

    @property
    def concurrency(self) -> int:
        """Replies at once to this server across everyone (0: no cap)."""
        if self.max_concurrent is not None:
            return self.max_concurrent
        return registry.spec(self.kind).default_max_concurrent

    def provider(self) -> Provider:
        return registry.create(self.kind, self.options())


class Conversation(models.Model):
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="conversations"
    )
    title = models.CharField(max_length=200, blank=True)
    # Names a conversation a transport keeps reopening (an MQTT device's session).
    external_key = models.CharField(max_length=200, blank=True)
    pinned = models.BooleanField(default=False, db_default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at"]
        indexes = [models.Index(fields=["user", "-updated_at"])]
        constraints = [
            models.UniqueConstraint(
                fields=["user", "external_key"],
                condition=~models.Q(external_key=""),
                name="one_conversation_per_external_key",
            )
        ]

    def __str__(self) -> str:
        return self.title or f"Conversation {self.pk}"


class Message(models.Model):
    class Role(models.TextChoices):
        SYSTEM = "system"
        USER = "user"
        ASSISTANT = "assistant"

    class Status(models.TextChoices):
        COMPLETE = "complete"
        STREAMING = "streaming"
        STOPPED = "stopped"
        ERROR = "error"

    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="messages"
    )
    role = models.CharField(max_length=16, choices=Role.choices)
    content = models.TextField(blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.COMPLETE)
    error_code = models.CharField(max_length=32, blank=True)
    error_message = models.TextField(blank=True)
    provider = models.CharField(max_length=32, blank=True)
    model = models.CharField(max_length=200, blank=True)
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    cost = models.DecimalField(max_digits=12, decimal_places=6, default=Decimal(0))
    ttft_ms = models.FloatField(null=True, blank=True, help_text="Time to first token")
    latency_ms = models.FloatField(null=True, blank=True)
    # A client's id for a user message, so that a resend is recognised.
    client_message_id = models.UUIDField(null=True, blank=True)
    # The number of the reply's event (docs/api.md "Replies") that `content` is
    # current as of: a client shows the content, then follows the reply after it.
    # db_default: a worker still running the previous release can insert during an upgrade.
    seq = models.PositiveIntegerField(default=0, db_default=0)
    # While streaming: the most this reply may cost, held against the person's budget.
    reserved_cost = models.DecimalField(
        max_digits=12, decimal_places=6, default=Decimal(0), db_default=Decimal(0)
    )
    # A reasoning model's thinking, kept apart: never shown as the answer, never sent back.
    thinking = models.TextField(blank=True, db_default="")
    thinking_ms = models.FloatField(null=True, blank=True)
    # Fallbacks: who was asked before the one that answered, and why they did not
    # ([{"provider", "model", "error": {...}, "ms"}]); empty when the first one answered.
    attempts = models.JSONField(default=list, blank=True, db_default=[])
    # Played back from the person's own reply cache: no upstream call, no cost.
    cached = models.BooleanField(default=False, db_default=False)
    # The replies of one compare (one prompt to several models) share it.
    compare_id = models.UUIDField(null=True, blank=True)
    # The user message an assistant message answers.
    reply_to = models.OneToOneField(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="reply"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [
            models.Index(fields=["conversation", "created_at"]),
            models.Index(
                fields=["status"], condition=models.Q(status="streaming"), name="streaming"
            ),
            # The staff dashboard's and provider health's newest replies (bench/dashboard.py).
            models.Index(
                fields=["created_at"], condition=models.Q(role="assistant"), name="reply_created"
            ),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["conversation", "client_message_id"], name="one_message_per_client_id"
            )
        ]

    def __str__(self) -> str:
        return f"{self.role}: {self.content[:40]}"


class ModelPrice(models.Model):
    """USD per million tokens for a provider's model, from a date on."""

    provider = models.CharField(max_length=32, choices=registry.choices)
    model = models.CharField(max_length=200)
    input_per_million = models.DecimalField(max_digits=10, decimal_places=4)
    output_per_million = models.DecimalField(max_digits=10, decimal_places=4)
    effective_from = models.DateField()

    class Meta:
        ordering = ["provider", "model", "-effective_from"]
        constraints = [
            models.UniqueConstraint(
                fields=["provider", "model", "effective_from"], name="one_price_per_day"
            )
        ]

    def __str__(self) -> str:
        return f"{self.provider}/{self.model} from {self.effective_from}"


class DailyUsage(models.Model):
    """Per person, day, provider and model: kept when conversations are deleted, so
    budgets and the staff dashboard do not forget spend."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    day = models.DateField()
    provider = models.CharField(max_length=32)
    model = models.CharField(max_length=200)
    requests = models.PositiveIntegerField(default=0)
    errors = models.PositiveIntegerField(default=0)
    input_tokens = models.PositiveBigIntegerField(default=0)
    output_tokens = models.PositiveBigIntegerField(default=0)
    cost = models.DecimalField(max_digits=14, decimal_places=6, default=Decimal(0))

    class Meta:
        ordering = ["-day"]
        verbose_name_plural = "daily usage"
        constraints = [
            models.UniqueConstraint(
                fields=["user", "day", "provider", "model"], name="one_usage_row_per_day"
            )
        ]

    def __str__(self) -> str:
        return f"{self.user} {self.day} {self.provider}/{self.model}"


class FallbackEntry(models.Model):
    """One step of a person's "if it fails" chain, tried in `position` order."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="fallbacks"
    )
    position = models.PositiveSmallIntegerField()
    provider = models.CharField(max_length=32, choices=registry.choices)
    model = models.CharField(max_length=200, blank=True, help_text="Empty: the card's model.")

    class Meta:
        ordering = ["user", "position"]
        verbose_name_plural = "fallback entries"
        constraints = [
            models.UniqueConstraint(fields=["user", "position"], name="one_fallback_per_position")
        ]

    def __str__(self) -> str:
        return f"{self.user} #{self.position}: {self.provider}/{self.model or 'default'}"


class Upstream(models.Model):
    """One upstream server (scheme://host:port) shared by everyone who points at it: its
    circuit breaker across users (llm/breakers.py)."""

    address = models.CharField(max_length=300, unique=True)
    failures = models.PositiveIntegerField(default=0)
    open_until = models.DateTimeField(null=True, blank=True)
    failure = models.TextField(blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return self.address


class Preset(models.Model):
    """A named provider/model with its system prompt and sampling, picked in the widget.
    Staff may publish one to everyone (read-only to the others)."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="presets"
    )
    name = models.CharField(max_length=80)
    provider = models.CharField(max_length=32, choices=registry.choices)
    model = models.CharField(max_length=200, blank=True, help_text="Empty: the card's model.")
    system_prompt = models.TextField(blank=True)
    temperature = models.FloatField(
        null=True, blank=True, validators=[MinValueValidator(0.0), MaxValueValidator(2.0)]
    )
    max_tokens = models.PositiveIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1), MaxValueValidator(32000)]
    )
    published = models.BooleanField(default=False, help_text="Staff only: everyone may use it.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["user", "name"], name="one_preset_per_name")]

    def __str__(self) -> str:
        return self.name


class PromptTemplate(models.Model):
    """A reusable message with `{placeholders}`, offered when a person types `/`."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="prompt_templates"
    )
    name = models.CharField(max_length=80)
    text = models.TextField()
    published = models.BooleanField(default=False, help_text="Staff only: everyone may use it.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["user", "name"], name="one_template_per_name")
        ]

    def __str__(self) -> str:
        return self.name


class Evaluation(models.Model):
    """A prompt set run across models (`manage.py evaluate` or the page); each run is an
    ordinary reply, its numbers kept on an EvaluationRun."""

    class Status(models.TextChoices):
        PENDING = "pending"
        RUNNING = "running"
        DONE = "done"
        STOPPED = "stopped"
        FAILED = "failed"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="evaluations"
    )
    name = models.CharField(max_length=200, blank=True)
    # ["openai/gpt-4o-mini", "local/SmolLM2-135M-Instruct", ...]
    targets = models.JSONField(default=list)
    # [{"prompt", "system"?, "expect_contains"?, "expect_regex"?}, ...]
    prompts = models.JSONField(default=list)
    repeat = models.PositiveSmallIntegerField(default=1)
    concurrency = models.PositiveSmallIntegerField(default=4)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.name or f"Evaluation {self.pk}"


class EvaluationRun(models.Model):
    """One prompt on one model (one repeat): what came back and how it measured up."""

    evaluation = models.ForeignKey(Evaluation, on_delete=models.CASCADE, related_name="runs")
    prompt_index = models.PositiveIntegerField()
    target = models.CharField(max_length=240, help_text="provider/model")
    repeat_index = models.PositiveSmallIntegerField(default=0)
    message = models.ForeignKey(Message, null=True, blank=True, on_delete=models.SET_NULL)
    status = models.CharField(max_length=16, choices=Message.Status.choices)
    content = models.TextField(blank=True)
    error = models.TextField(blank=True)
    ttft_ms = models.FloatField(null=True, blank=True)
    latency_ms = models.FloatField(null=True, blank=True)
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    cost = models.DecimalField(max_digits=12, decimal_places=6, default=Decimal(0))
    checks_passed = models.PositiveSmallIntegerField(default=0)
    checks_total = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["prompt_index", "target", "repeat_index"]
        constraints = [
            # What makes an interrupted evaluation resumable: each cell is done once.
            models.UniqueConstraint(
                fields=["evaluation", "prompt_index", "target", "repeat_index"],
                name="one_run_per_cell",
            )
        ]

    def __str__(self) -> str:
        return f"{self.evaluation} #{self.prompt_index} {self.target}"


def _attachment_path(instance: Attachment, filename: str) -> str:
    # Per person, under a random name: the name people gave it stays in `name`.
    return f"attachments/{instance.user_id}/{uuid.uuid4().hex}"


class Attachment(models.Model):
    """A file a person attached: stored as uploaded, with what the model is sent (the
    extracted text, or the image itself). Deleted with its conversation."""

    class Kind(models.TextChoices):
        TEXT = "text"  # text, Markdown, code, CSV, and a PDF's extracted text
        IMAGE = "image"  # PNG, JPEG, WebP, GIF, for vision models

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="attachments"
    )
    file = models.FileField(upload_to=_attachment_path)
    name = models.CharField(max_length=255)
    content_type = models.CharField(max_length=100, help_text="Sniffed from the bytes.")
    size = models.PositiveBigIntegerField()
    kind = models.CharField(max_length=8, choices=Kind.choices)
    text = models.TextField(blank=True, help_text="What a text or PDF file reads as.")
    # Set when a message is sent with it; until then it is the person's upload alone.
    message = models.ForeignKey(
        Message, null=True, blank=True, on_delete=models.CASCADE, related_name="attachments"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return self.name
