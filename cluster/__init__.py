"""The cluster layer: live streams and file batches on Ray (an optional extra, ``.[cluster]``).

It sits above ``pipeline``: each live stream runs a whole one-stream :class:`pipeline.runner.Pipeline`
inside its own Ray actor, and each file of a batch runs :func:`pipeline.denoise_file.denoise_file`
on a worker. Nothing below imports this package; Ray is imported only where it is used.
"""
