from django.urls import path, re_path

from . import views

urlpatterns = [
    path("", views.api_index, name="api-index"),
    path("", views.api.urls),
    re_path(r"^(?P<path>.*)$", views.unknown_endpoint),
]
