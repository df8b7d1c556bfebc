from __future__ import annotations

import json

from django.db import transaction
from django.http import HttpRequest, JsonResponse

from .models import Order
from .tasks import send_confirmation


def create_order(request: HttpRequest) -> JsonResponse:
    """POST {"email": ..., "card": ...}: the order and its confirmation job are written in
    the request's transaction (ATOMIC_REQUESTS): both or neither."""
    body = json.loads(request.body)
    order = Order.objects.create(email=body["email"])
    job = send_confirmation.defer(order.pk)
    if body.get("card") == "declined":
        transaction.set_rollback(True)  # the order and the job both go
        return JsonResponse({"error": "payment declined"}, status=402)
    return JsonResponse({"order": order.pk, "job": int(job)}, status=201)
