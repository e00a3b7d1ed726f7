"""Structured logging and metrics for both servers."""
