"""The Slack surface: the Bolt app factory, its listeners, and the HTTP endpoint."""
