"""The query-server process: projections built from the EventFeed, served by QueryService."""
