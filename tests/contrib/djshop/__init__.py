"""A Django app for tests/contrib/test_django.py: orders, and tasks that use the ORM."""
