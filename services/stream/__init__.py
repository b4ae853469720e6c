"""The stream processor (issue 3): archive every event to S3 ``raw/`` and maintain the
experiment and engagement aggregates as delta batches under ``agg/``. See docs/stream.md.

Modules: ``fold`` (pure aggregation), ``cuts`` (pure cut policy), ``batch`` (a partition's
micro-batch and its objects), ``pipeline`` (consumer loop), ``changelog`` (state
persistence), ``storage`` (S3), ``settings`` (stream-only settings), ``app`` (Faust app
factory), ``worker`` (entry point).
"""
