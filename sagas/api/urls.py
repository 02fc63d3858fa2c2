"""The API's routes: ``path("api/", include("sagas.api.urls"))`` in the project's URLconf."""

from django.urls import path

from sagas.api import views

app_name = "sagas-api"

urlpatterns = [
    path("sagas/<str:name>/runs/", views.StartRunView.as_view(), name="start-run"),
    path("runs/", views.RunListView.as_view(), name="run-list"),
    path("runs/<str:run_id>/", views.RunDetailView.as_view(), name="run-detail"),
    path("runs/<str:run_id>/events/", views.RunEventsView.as_view(), name="run-events"),
    path("runs/<str:run_id>/retry/", views.RetryRunView.as_view(), name="run-retry"),
    path("runs/<str:run_id>/cancel/", views.CancelRunView.as_view(), name="run-cancel"),
    path("runs/<str:run_id>/resolve/", views.ResolveRunView.as_view(), name="run-resolve"),
    path("runs/<str:run_id>/signal/", views.SignalRunView.as_view(), name="run-signal"),
]
