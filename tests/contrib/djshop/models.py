from __future__ import annotations

from django.db import models


class Order(models.Model):
    email = models.TextField()
    shipped = models.BooleanField(default=False)

    class Meta:
        app_label = "djshop"
