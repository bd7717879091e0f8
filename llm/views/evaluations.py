"""Evaluation pages: a person's evaluations with a form to start one, the report (followed
live while it runs), Stop and Resume, and the CSV and JSON exports.

Starting one runs it on this worker's event loop (llm/evaluations.py); the report reads
its numbers from the database, so it follows the run from any worker. Another person's
evaluation is a 404 on every path.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from typing import Any, cast

from asgiref.sync import sync_to_async
from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.core.validators import MaxValueValidator
from django.db.models import Count, QuerySet
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.safestring import SafeString
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRefresh
from django_htmx.middleware import HtmxDetails

from accounts.models import User
from llm import evaluations, prompt_sets
from llm.charts import Series, labelled_bar_chart
from llm.evaluations import RUN_FIELDS, EvaluationError, Report, run_dict
from llm.models import Evaluation, Message
from llm.turns import MAX_TOKENS
from llm.views.chat import cost_label

LIST_TEMPLATE = "llm/evaluations.html"
REPORT_TEMPLATE = "llm/evaluations_report.html"
LIVE_TARGET = "evaluation-live"
PAGE_SIZE = 50
MAX_UPLOAD_BYTES = 2 * 1024 * 1024
# A page-started evaluation is one person's: big enough to compare models, not a batch job.
MAX_CELLS = 1000
MAX_REPEAT = 10
DEFAULT_CONCURRENCY = 4
MAX_CONCURRENCY = 16
TIME_TITLE = "Total time per model, p50 and p95"
SUCCESS_TITLE = "Success rate per model (complete replies)"
CHECKS_TITLE = "Checks passed per model"
# Characters that make a spreadsheet read a cell as a formula (model output is untrusted).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails


class EvaluationForm(forms.Form):
    """Starting an evaluation from the page: what is valid, in words."""

    prompts = forms.FileField(
        label="Prompts (JSONL file)",
        help_text='One JSON object a line: {"prompt": "…"}, optionally with "system", '
        '"expect_contains", "expect_regex" and "max_tokens".',
    )
    models = forms.MultipleChoiceField(
        label="Models", required=False, widget=forms.CheckboxSelectMultiple
    )
    other_models = forms.CharField(
        label="Other models",
        required=False,
        max_length=2000,
        help_text="provider/model, separated by commas, e.g. openai/gpt-4o-mini.",
    )
    repeat = forms.IntegerField(
        label="Repeat",
        min_value=1,
        max_value=MAX_REPEAT,
        initial=1,
        help_text="Ask each prompt of each model this many times.",
    )
    concurrency = forms.IntegerField(label="At once", min_value=1, initial=DEFAULT_CONCURRENCY)
    max_tokens = forms.IntegerField(
        label="Longest answer (tokens)",
        min_value=1,
        max_value=MAX_TOKENS,
        required=False,
        help_text="For prompts that set none; empty: each model's own setting.",
    )
    name = forms.CharField(
        label="Name", required=False, max_length=200, help_text="Empty: the file's name."
    )

    def __init__(self, *args: Any, user: User, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.user = user
        offered = evaluations.offered_targets(user)
        models = cast(forms.MultipleChoiceField, self.fields["models"])
        models.choices = [(target, target) for target in offered]
        cap = min(settings.LLM_MAX_CONCURRENT_REPLIES or MAX_CONCURRENCY, MAX_CONCURRENCY)
        at_once = cast(forms.IntegerField, self.fields["concurrency"])
        at_once.initial = min(DEFAULT_CONCURRENCY, cap)
        at_once.widget.attrs["max"] = cap
        at_once.help_text = f"Replies asked at the same time (at most {cap})."
        at_once.validators.append(
            MaxValueValidator(
                cap,
                f"At most {cap} at once: that is how many replies one person may have "
                "being written at a time.",
            )
        )

    def clean_prompts(self) -> list[dict[str, Any]]:
        upload = self.cleaned_data["prompts"]
        self.file_name: str = upload.name or ""
        if upload.size > MAX_UPLOAD_BYTES:
            raise forms.ValidationError(
                f"The file is {upload.size / 1024 / 1024:.1f} MB; the limit is "
                f"{MAX_UPLOAD_BYTES // 1024 // 1024} MB: split it into smaller sets."
            )
        try:
            return prompt_sets.parse_prompts(prompt_sets.decode(upload.read()), source="The file")
        except prompt_sets.PromptsError as exc:
            raise forms.ValidationError(exc.message) from None

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        picked: list[str] = cleaned.get("models") or []
        typed = [name for name in (cleaned.get("other_models") or "").split(",") if name.strip()]
        if not picked and not typed:
            self.add_error("models", "Pick at least one model, or type one as provider/model.")
            return cleaned
        try:
            targets = evaluations.resolve_targets(self.user, picked + typed)
        except EvaluationError as exc:
            self.add_error("other_models" if typed else "models", exc.message)
            return cleaned
        cleaned["targets"] = targets
        prompts, repeat = cleaned.get("prompts"), cleaned.get("repeat")
        if prompts and repeat:
            replies = len(prompts) * len(targets) * repeat
            if replies > MAX_CELLS:
                self.add_error(
                    None,
                    f"That is {replies:,} replies ({len(prompts)} prompts × {len(targets)} "
                    f"models × {repeat}); the most at once is {MAX_CELLS:,}: use fewer "
                    "prompts, models or repeats.",
                )
        return cleaned


def _user(request: HttpRequest) -> User:
    return cast(User, request.user)  # every view here is behind login_required


def _evaluations_of(request: HttpRequest) -> QuerySet[Evaluation]:
    return Evaluation.objects.filter(user=_user(request))


def _evaluation_for(request: HttpRequest, pk: int) -> Evaluation:
    """The signed-in person's evaluation, or 404 for anyone else's."""
    return get_object_or_404(_evaluations_of(request), pk=pk)


def _total(evaluation: Evaluation) -> int:
    return len(evaluation.prompts) * len(evaluation.targets) * evaluation.repeat


# --- the list and the form -----------------------------------------------------------------


def _list_page(request: HttpRequest, form: EvaluationForm | None) -> HttpResponse:
    listing = _evaluations_of(request).annotate(done=Count("runs")).order_by("-created_at", "-pk")
    page = Paginator(listing, PAGE_SIZE).get_page(request.GET.get("page"))
    rows = [(evaluation, _total(evaluation)) for evaluation in page.object_list]
    context = {
        "form": form or EvaluationForm(user=_user(request)),
        "page": page,
        "rows": rows,
    }
    return render(request, LIST_TEMPLATE, context)


def _start(request: HttpRequest) -> Evaluation | EvaluationForm:
    user = _user(request)
    form = EvaluationForm(request.POST, request.FILES, user=user)
    if not form.is_valid():
        return form
    data = form.cleaned_data
    evaluation = evaluations.create(
        user,
        data["prompts"],
        data["targets"],
        repeat=data["repeat"],
        concurrency=data["concurrency"],
        name=data["name"] or form.file_name,
        max_tokens=data["max_tokens"],
    )
    evaluations.claim(evaluation.pk)
    return evaluation


@login_required
@require_http_methods(["GET", "POST"])
async def evaluations_page(request: HttpRequest) -> HttpResponse:
    """The person's evaluations, newest first; POST starts one from the form."""
    form: EvaluationForm | None = None
    if request.method == "POST":
        started = await sync_to_async(_start)(request)
        if isinstance(started, Evaluation):
            # Runs on this worker's event loop, beyond this request (a task held by
            # llm/evaluations.py); the report page follows it from the database.
            evaluations.start_in_background(started.pk)
            return redirect("evaluation", pk=started.pk)
        form = started
    return await sync_to_async(_list_page)(request, form)


# --- the report ----------------------------------------------------------------------------


def _duration(ms: float) -> str:
    return f"{ms:.0f} ms" if ms < 1000 else f"{ms / 1000:.1f} s"


def _percent(value: float) -> str:
    return f"{value:.0f}%"


@dataclass(frozen=True)
class Chart:
    title: str
    svg: SafeString


def charts(report: Report) -> list[Chart]:
    labels = [row.target for row in report.models]
    drawn = [
        labelled_bar_chart(
            chart_id="chart-time",
            title=TIME_TITLE,
            labels=labels,
            series=[
                Series("p50", [row.latency_p50_ms for row in report.models], "chart-a"),
                Series("p95", [row.latency_p95_ms for row in report.models], "chart-c"),
            ],
            value_label=_duration,
        ),
        labelled_bar_chart(
            chart_id="chart-success",
            title=SUCCESS_TITLE,
            labels=labels,
            series=[Series("success", [row.success_percent for row in report.models])],
            value_label=_percent,
            top=100.0,
        ),
        labelled_bar_chart(
            chart_id="chart-checks",
            title=CHECKS_TITLE,
            labels=labels,
            series=[Series("checks", [row.checks_percent for row in report.models])],
            value_label=_percent,
            top=100.0,
        ),
    ]
    return [
        Chart(title, chart)
        for title, chart in zip((TIME_TITLE, SUCCESS_TITLE, CHECKS_TITLE), drawn, strict=True)
    ]


def _context(evaluation: Evaluation) -> dict[str, Any]:
    report = evaluations.report(evaluation)
    conversations = dict(
        Message.objects.filter(pk__in=[r.message_id for r in report.runs if r.message_id])
        .values_list("pk", "conversation_id")
        .iterator()
    )
    for run in report.runs:
        # Where the answer is kept as an ordinary reply (None once that was deleted).
        setattr(run, "conversation_id", conversations.get(run.message_id or 0))  # noqa: B010
    return {
        "evaluation": evaluation,
        "report": report,
        "charts": charts(report),
        "summary": [(row, cost_label(row.cost)) for row in report.models],
        "running": evaluation.status == Evaluation.Status.RUNNING,
        "resumable": evaluation.status != Evaluation.Status.RUNNING and report.done < report.total,
    }


@login_required
@require_GET
def evaluation_report(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    evaluation = _evaluation_for(request, pk)
    if request.htmx and request.htmx.target == LIVE_TARGET:
        if evaluation.status != Evaluation.Status.RUNNING:
            return HttpResponseClientRefresh()  # it ended: the whole page, answers and all
        return render(request, f"{REPORT_TEMPLATE}#live", _context(evaluation))
    return render(request, REPORT_TEMPLATE, _context(evaluation))


@login_required
@require_POST
def evaluation_stop(request: HttpRequest, pk: int) -> HttpResponse:
    """Mark it stopped; the worker running it sees that within a second and stops."""
    evaluation = _evaluation_for(request, pk)
    stopped = Evaluation.objects.filter(pk=evaluation.pk, status=Evaluation.Status.RUNNING).update(
        status=Evaluation.Status.STOPPED,
        error="Stopped on its page: resume to ask the rest.",
        finished_at=timezone.now(),
    )
    if stopped:
        messages.info(request, "Stopping: the replies being written are kept as stopped.")
    return redirect("evaluation", pk=evaluation.pk)


def _resume(request: HttpRequest, pk: int) -> bool:
    evaluation = _evaluation_for(request, pk)
    if evaluations.claim(evaluation.pk):
        return True
    messages.error(request, "It is already running: wait for it, or press Stop first.")
    return False


@login_required
@require_POST
async def evaluation_resume(request: HttpRequest, pk: int) -> HttpResponse:
    """Ask the cells that have no run yet, on this worker's event loop."""
    if await sync_to_async(_resume)(request, pk):
        evaluations.start_in_background(pk)
    return redirect("evaluation", pk=pk)


# --- exports ---------------------------------------------------------------------------------


def _cell(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return "" if value is None else value


@login_required
@require_GET
def evaluation_csv(request: HttpRequest, pk: int) -> HttpResponse:
    """Every run with its numbers, a header row first."""
    report = evaluations.report(_evaluation_for(request, pk))
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="evaluation-{pk}.csv"'
    writer = csv.writer(response)
    writer.writerow(("prompt", *RUN_FIELDS))
    prompts = report.evaluation.prompts
    for run in report.runs:
        row = run_dict(run)
        text = prompts[run.prompt_index]["prompt"] if run.prompt_index < len(prompts) else ""
        writer.writerow([_cell(text), *(_cell(row[name]) for name in RUN_FIELDS)])
    return response


@login_required
@require_GET
def evaluation_json(request: HttpRequest, pk: int) -> HttpResponse:
    """The evaluation, the summary per model and every run."""
    report = evaluations.report(_evaluation_for(request, pk))
    response = JsonResponse(report.as_dict(), json_dumps_params={"indent": 2})
    response["Content-Disposition"] = f'attachment; filename="evaluation-{pk}.json"'
    return response
