"""Switchboard in a Django project (`pip install switchboard-live[django]`): Switchboard itself
never imports Django; the app does, through this package.

- `views.connect`: the app's connect endpoint (SWITCHBOARD_CONNECT_URL): the logged-in user of
  the session cookie Switchboard forwards, or 401. Django runs it like any request: its own
  thread, its own database connection, its own middleware.
- `views.note_permission(check)`: the app's permission endpoint (SWITCHBOARD_PERMISSION_URL)
  around the app's own `check(user, note_id) -> bool`; a malformed id (ValueError, a missing
  object) answers 400 or 403, never 500.
- `publish_on_commit(group, event, **fields)`: publish once the transaction commits; nothing is
  delivered or stored in the history when it rolls back.
- Settings: `SWITCHBOARD = {"REDIS_URL": ..., "PREFIX": ..., "HOOK_KEY": ..., "EXPIRES_IN": 60}`.
"""
