"""Integrations with frameworks: ``pgqueue.contrib.django``."""
