"""The handoff domain: model, validation, routing, lifecycle, SLA. Imports neither Slack nor the database."""
