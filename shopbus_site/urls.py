from django.contrib import admin
from django.urls import include, path

from observability import views as observability

from . import views

urlpatterns = [
    path("", views.landing, name="landing"),
    path("admin/event-flow/", admin.site.admin_view(observability.event_flow), name="event-flow"),
    path("admin/", admin.site.urls),
    path("api/", include("orders.api.urls")),
    path("healthz", observability.healthz, name="healthz"),
    path("readyz", observability.readyz, name="readyz"),
]

handler500 = "orders.api.views.server_error"
