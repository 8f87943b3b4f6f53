from django.urls import path, re_path

from . import views

urlpatterns = [
    path("orders", views.order_create, name="api-create-order"),
    path("orders/<str:order_id>", views.order_detail, name="api-order-detail"),
    path("orders/<str:order_id>/cancel", views.order_cancel, name="api-cancel-order"),
    path("orders/<str:order_id>/events", views.order_events, name="api-order-events"),
    path("products", views.product_list, name="api-products"),
    re_path(r"^(?P<path>.*)$", views.unknown_endpoint),
]
