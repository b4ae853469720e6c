"""The local stack (``make up``): Kafka (KRaft), PostgreSQL, s3rver, Prometheus and the
ingest, stream and loader services, natively, on loopback.

- layout.py: every port and directory, from the services' own settings (ONE place);
- parts.py, kafka.py, postgres.py: one recipe per server (prepare, command, healthy), shared with
  the tests' dedicated components (tests/support/components.py);
- procs.py: liveness (a zombie or a stranger behind a pid file is not running), detached
  start, stop that never signals a stranger;
- manager.py: up/down/status, what ``scripts/stack.sh`` delegates to (bash keeps only the
  installs: venv, apt, Maven, npm).
"""
