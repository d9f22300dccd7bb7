from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404
from django.views.decorators.http import require_POST

from notes.models import Comment, Note
from switchboard.django.publish import publish_on_commit, revoke_on_commit


def may_open_note(user, note_id: str) -> bool:
    """The app's own rule, as the Channels consumer had it: the owner and collaborators."""
    note = Note.objects.get(pk=int(note_id))  # "abc": ValueError; no such note: DoesNotExist
    return note.owner_id == user.pk or note.collaborators.filter(pk=user.pk).exists()


@login_required
@require_POST
def comment(request: HttpRequest, note_id: int) -> HttpResponse:
    """Adds a comment; everyone with the note open hears of it once the transaction commits.
    `?fail=1` rolls the transaction back after publishing: nothing must be delivered."""
    note = get_object_or_404(Note, pk=note_id)
    try:
        with transaction.atomic():
            saved = Comment.objects.create(note=note, text=request.POST["text"])
            publish_on_commit(f"note_{note.pk}", "data", payload={"comment": saved.text})
            if request.GET.get("fail"):
                raise RuntimeError("rolled back on purpose")
    except RuntimeError:
        return JsonResponse({"rolled_back": True}, status=409)
    return JsonResponse({"id": saved.pk})


@login_required
@require_POST
def remove_collaborator(request: HttpRequest, note_id: int, user_id: int) -> HttpResponse:
    """The owner takes a collaborator off the note: their permission goes, and once that commits
    their open tabs leave the note at once (a RevokedEvent each) instead of hearing it on."""
    note = get_object_or_404(Note, pk=note_id, owner=request.user)
    with transaction.atomic():
        note.collaborators.remove(user_id)
        revoke_on_commit(str(user_id), f"note_{note.pk}", reason="removed from the note by its owner")
    return JsonResponse({"removed": user_id})
