"""The report browser's routes, one module per concern; each module's ``ROUTES`` is wired into
the app by :func:`compute_to_data.web.app.create_app`."""
