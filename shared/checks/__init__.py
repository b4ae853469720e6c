"""Data tests that data scientists write: SodaCL files run by ``eventpipe checks run`` (docs/checks.md)."""
