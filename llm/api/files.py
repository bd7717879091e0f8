"""Files to attach to a message (docs/api.md, Files): upload, download, delete.

A thin transport over llm/attachments.py, which decides what a file is and what is
allowed. `POST /api/v1/files` (multipart, field `file`) answers `{"id", "name",
"content_type", "size"}`; the id goes in a chat body's or `send` frame's
`attachments`. `GET /api/v1/files/{id}` downloads it as stored, `DELETE` removes it.
Another person's file is a 404 like one that never was.
"""

from __future__ import annotations

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.http.multipartparser import MultiPartParserError
from django.utils.http import content_disposition_header

from accounts.models import User
from llm import attachments
from llm.api.base import ApiError, allow, api_view, user_of
from llm.models import Attachment

# What a multipart body holds besides the file itself: its boundaries and part headers.
ENVELOPE_BYTES = 64 * 1024


def _upload(request: HttpRequest) -> UploadedFile:
    declared = int(request.META.get("CONTENT_LENGTH") or 0)
    if declared > settings.LLM_MAX_FILE_BYTES + ENVELOPE_BYTES:
        # Not even parsed: a body this long holds a file over the limit.
        raise attachments.too_big(declared)
    if not (request.content_type or "").startswith("multipart/form-data"):
        raise ApiError(
            "bad_request",
            "Send the file as multipart/form-data in a field called file "
            "(curl -F file=@notes.md ...).",
        )
    try:
        upload = request.FILES.get("file")
    except MultiPartParserError:
        raise ApiError("bad_request", "The multipart body could not be read.") from None
    if upload is None:
        raise ApiError("bad_request", "Send the file in a multipart field called file.")
    return upload


@sync_to_async
def _store(user: User, upload: UploadedFile) -> Attachment:
    if upload.size is not None and upload.size > settings.LLM_MAX_FILE_BYTES:
        raise attachments.too_big(upload.size)
    # At most LLM_MAX_FILE_BYTES (checked above), and read on a worker thread.
    data = upload.read()
    return attachments.store(user, upload.name or "file", data)


@api_view
async def files(request: HttpRequest) -> HttpResponse:
    allow(request, "POST")
    stored = await _store(user_of(request), _upload(request))
    return JsonResponse(attachments.describe(stored), status=201)


@sync_to_async
def _download(user: User, pk: int) -> HttpResponse:
    found = Attachment.objects.filter(user=user, pk=pk).first()
    if found is None:
        raise attachments.not_found()
    try:
        data = attachments.contents(found)
    except OSError:
        raise ApiError(
            "not_found", f"{found.name} is no longer stored: attach it again if you need it."
        ) from None
    response = HttpResponse(data, content_type=found.content_type)
    # Always a download, never shown in the page: nothing uploaded runs on this origin.
    response["Content-Disposition"] = content_disposition_header(True, found.name)
    return response


@api_view
async def file_detail(request: HttpRequest, pk: int) -> HttpResponse:
    allow(request, "GET", "DELETE")
    user = user_of(request)
    if request.method == "DELETE":
        # The post_delete receiver removes the stored file once this commits.
        deleted, _ = await Attachment.objects.filter(user=user, pk=pk).adelete()
        if not deleted:
            raise attachments.not_found()
        return HttpResponse(status=204)
    return await _download(user, pk)
