"""URL routes: the Django admin is the operator's console; /api/ is the REST API; /metrics is for Prometheus."""

from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from sagas.views import metrics_view

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("api/", include("sagas.api.urls")),
    path("metrics", metrics_view, name="sagas-metrics"),
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
]
