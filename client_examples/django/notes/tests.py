"""How the app tests what its views publish: no Redis, no Switchboard server."""

from django.contrib.auth.models import User
from django.test import TestCase

from notes.models import Note
from switchboard.testing import captured_events


class CommentTests(TestCase):
    def setUp(self) -> None:
        self.alice = User.objects.create_user("alice", password="pw")
        self.note = Note.objects.create(title="n", owner=self.alice)
        self.client.force_login(self.alice)

    def test_a_comment_is_published_to_its_note_on_commit(self) -> None:
        with captured_events() as events, self.captureOnCommitCallbacks(execute=True):
            reply = self.client.post(f"/notes/{self.note.pk}/comment/", {"text": "hello"})
        self.assertEqual(reply.status_code, 200)
        self.assertEqual([(e.group, e.type, e.fields) for e in events], [(f"note_{self.note.pk}", "data", {"payload": {"comment": "hello"}})])

    def test_a_rolled_back_comment_publishes_nothing(self) -> None:
        with captured_events() as events, self.captureOnCommitCallbacks(execute=True):
            reply = self.client.post(f"/notes/{self.note.pk}/comment/?fail=1", {"text": "never"})
        self.assertEqual(reply.status_code, 409)
        self.assertEqual(events, [])


class CollaboratorTests(TestCase):
    def test_removing_a_collaborator_revokes_their_note_on_commit(self) -> None:
        alice = User.objects.create_user("alice", password="pw")
        bob = User.objects.create_user("bob", password="pw")
        note = Note.objects.create(title="n", owner=alice)
        note.collaborators.add(bob)
        self.client.force_login(alice)
        with captured_events() as events, self.captureOnCommitCallbacks(execute=True):
            reply = self.client.post(f"/notes/{note.pk}/collaborators/{bob.pk}/remove/")
        self.assertEqual(reply.status_code, 200)
        self.assertFalse(note.collaborators.filter(pk=bob.pk).exists())
        self.assertEqual(
            [(e.group, e.type, e.fields["group"]) for e in events], [(f"user_{bob.pk}", "revoke", f"note_{note.pk}")]
        )
