from django.contrib.auth import views as auth
from django.urls import path

from notes import views
from switchboard.django.views import connect, connection_info, note_permission

urlpatterns = [
    path("login/", auth.LoginView.as_view(), name="login"),
    path("logout/", auth.LogoutView.as_view(), name="logout"),
    # Switchboard asks these (SWITCHBOARD_CONNECT_URL, SWITCHBOARD_PERMISSION_URL).
    path("switchboard/connect/", connect),
    path("switchboard/info/", connection_info),  # what a page needs to connect
    path("switchboard/note-permission/", note_permission(views.may_open_note)),
    path("notes/<int:note_id>/comment/", views.comment),
    path("notes/<int:note_id>/collaborators/<int:user_id>/remove/", views.remove_collaborator),
]
