"""Actors: one per account, one message at a time, no locks; activated on demand."""
