"""eventpipe.loader: loads S3 batches into the warehouse exactly once (docs/loader.md).

Public API for other services lives in ``eventpipe.loader.warehouse`` (connections,
migrations, ``replace_day``) and ``eventpipe.loader.batches`` (parsing S3 objects).
"""
