"""The report browser (``c2d serve``): follow tasks, read reports, browse and validate images.

A Starlette app; every page acts as the signed-in iRODS user (or the ``--local`` user), so what
the catalog lets that user see and change is exactly what the browser shows and allows.
"""
