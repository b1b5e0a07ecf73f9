"""Providers as data: endpoints, auth, key env vars, quirk flags, and the model catalog."""
