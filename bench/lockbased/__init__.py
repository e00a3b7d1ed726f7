"""The traditional contender: account rows locked with SELECT ... FOR UPDATE in PostgreSQL."""
