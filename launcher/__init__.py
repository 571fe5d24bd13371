"""The ``estate`` command line, the demo supervisor and the local server runners.

This is the composition layer above the services: it may import ``edge``, ``ingest`` and
``dispatch``; they never import it.
"""
