"""The outside surfaces: Slack app, intake API, command line."""
