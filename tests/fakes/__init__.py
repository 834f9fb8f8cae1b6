"""Test doubles that run for real on loopback (fake Slack Web API, signed requests, webhook receivers)."""
