"""The collector: a Segment-compatible HTTP API that publishes validated events to Kafka."""
