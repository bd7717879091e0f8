"""Pytest fixtures for the fake provider servers (registered in tests/conftest.py)."""
