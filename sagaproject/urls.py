"""URL routes: the Django admin is the operator's console; /metrics is for Prometheus."""

from django.contrib import admin
from django.urls import path
from django.views.generic import RedirectView

from sagas.views import metrics_view

urlpatterns = [
    path("admin/", admin.site.urls),
    path("metrics", metrics_view, name="sagas-metrics"),
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
]
