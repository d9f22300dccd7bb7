from django.conf import settings
from django.db import models


class Note(models.Model):
    title = models.CharField(max_length=200)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notes")
    collaborators = models.ManyToManyField(settings.AUTH_USER_MODEL, related_name="shared_notes", blank=True)


class Comment(models.Model):
    note = models.ForeignKey(Note, on_delete=models.CASCADE)
    text = models.TextField()
