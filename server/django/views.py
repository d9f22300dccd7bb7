"""The app's side of Switchboard's connect and permission endpoints, as Django views."""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Callable
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ObjectDoesNotExist, ValidationError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from switchboard.django.conf import setting
from switchboard.security.auth import mint_token

KEY_HEADER = "HTTP_X_SWITCHBOARD_KEY"
log = logging.getLogger(__name__)

NoteCheck = Callable[[Any, str], bool]
"""`check(user, note_id) -> bool`, the app's own rule (a Django model query, say)."""


def _from_switchboard(request: HttpRequest) -> bool:
    """Whether the request carries SWITCHBOARD["HOOK_KEY"]: compared as bytes in constant time.
    With no key set, nothing is from Switchboard: these views never answer a stranger (a
    permission view that said yes to anyone who asked would open every note)."""
    key = setting("HOOK_KEY")
    if not key:
        log.error('SWITCHBOARD["HOOK_KEY"] is not set: the Switchboard hook views refuse every request')
        return False
    # WSGI hands header values as latin-1 text: back to the bytes that were sent.
    given = request.META.get(KEY_HEADER, "").encode("latin-1", errors="replace")
    return hmac.compare_digest(given, str(key).encode())


@csrf_exempt
@require_POST
def connect(request: HttpRequest) -> HttpResponse:
    """SWITCHBOARD_CONNECT_URL: who the forwarded session cookie belongs to."""
    if not _from_switchboard(request):
        return JsonResponse({"error": "not from Switchboard"}, status=403)
    user = request.user
    if not user.is_authenticated:
        return JsonResponse({"error": "not logged in"}, status=401)
    return JsonResponse({"user": str(user.pk), "roles": [], "expires_in": setting("EXPIRES_IN")})


@login_required
def connection_info(request: HttpRequest) -> HttpResponse:
    """What the logged-in page needs to connect: Switchboard's URL, the user id, and, when
    SWITCHBOARD["SECRET"] is set (no connect endpoint), a token for `connectionParams` that
    lives SWITCHBOARD["EXPIRES_IN"] seconds. With the connect endpoint the cookie is enough."""
    secret = setting("SECRET")
    token = mint_token(str(secret), str(request.user.pk), ttl=int(setting("EXPIRES_IN"))) if secret else None
    return JsonResponse({"url": setting("URL"), "userId": str(request.user.pk), "token": token})


def note_permission(check: NoteCheck) -> Callable[[HttpRequest], HttpResponse]:
    """SWITCHBOARD_PERMISSION_URL around `check`: {"allowed": bool}; 400 for a malformed id."""

    @csrf_exempt
    @require_POST
    def view(request: HttpRequest) -> HttpResponse:
        if not _from_switchboard(request):
            return JsonResponse({"error": "not from Switchboard"}, status=403)
        try:
            body = json.loads(request.body)
            user = get_user_model().objects.get(pk=body["user"])
        except (ValueError, KeyError, TypeError, ObjectDoesNotExist, ValidationError):
            return JsonResponse({"allowed": False}, status=403)
        try:
            allowed = bool(check(user, str(body.get("note_id"))))
        except (ValueError, ValidationError):  # int("abc"): the id, not the app
            return JsonResponse({"error": "malformed note id"}, status=400)
        except ObjectDoesNotExist:
            return JsonResponse({"allowed": False}, status=404)
        return JsonResponse({"allowed": allowed})

    return view  # type: ignore[no-any-return]
