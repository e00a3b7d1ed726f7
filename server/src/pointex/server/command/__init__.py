"""The command-server process: CommandService and EventFeed; the only writer of events."""
