"""The deterministic simulation of the command side, one seed a run (docs/security.md)."""
