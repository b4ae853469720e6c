"""eventpipe: a Segment-compatible event pipeline (HTTP -> Kafka -> S3 -> warehouse).

This package (the repo's ``shared/`` folder) holds the pure core shared by the services:
settings, the event model, S3 key naming, rollup definitions and the command line.
"""

__version__ = "0.1.0"
