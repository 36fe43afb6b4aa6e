"""The ``dsa-stream`` command group and the ``run-first-mosaic`` script."""
