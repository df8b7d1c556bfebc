from __future__ import annotations

from django.contrib import admin
from django.urls import path
from orders.views import create_order

urlpatterns = [
    path("admin/", admin.site.urls),
    path("orders/", create_order),
]
