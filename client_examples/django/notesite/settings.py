"""A small Django project beside Switchboard: session-cookie login, a Note model, SQLite."""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "notesite-development-key-not-for-production")
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "notes",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]
ROOT_URLCONF = "notesite.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {"context_processors": ["django.template.context_processors.request"]},
    }
]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("NOTESITE_DB", str(BASE_DIR / "notesite.sqlite3")),
    }
}
USE_TZ = True
LOGIN_REDIRECT_URL = "/"

# What Switchboard needs to know (switchboard.django.conf): where to publish, the key its
# servers send to the hook views, how long an answer about a session holds.
SWITCHBOARD = {
    "REDIS_URL": os.environ.get("REDIS_URL"),
    "PREFIX": os.environ.get("SWITCHBOARD_PREFIX"),
    "HOOK_KEY": os.environ.get("SWITCHBOARD_HOOK_KEY"),
    "EXPIRES_IN": int(os.environ.get("NOTESITE_EXPIRES_IN", "60")),
    "URL": os.environ.get("SWITCHBOARD_URL", "ws://127.0.0.1:8000/graphql"),
    "SECRET": os.environ.get("SWITCHBOARD_SECRET"),  # only to hand pages a token
}
