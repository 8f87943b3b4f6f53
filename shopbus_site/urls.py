from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/", include("orders.api.urls")),
]

handler500 = "orders.api.views.server_error"
