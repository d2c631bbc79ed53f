"""Fake `comfy` package (tests only): `comfy.utils` and `comfy.model_management`."""
