"""Job kind -> handler: the one table the worker, the daemon and ``run-first-mosaic`` use."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from dsa_stream.registry import JobKind

#: Each job kind's handler, as ``module:function`` (imported on first use so the CLI
#: and the daemon start without loading the stage packages).
HANDLERS: dict[str, str] = {
    JobKind.CONVERT: "dsa_stream.pipeline.convert:convert_handler",
    JobKind.CALIBRATE: "dsa_stream.pipeline.calibration.stage:calibrate_handler",
    JobKind.IMAGE: "dsa_stream.pipeline.image:image_handler",
    JobKind.MOSAIC: "dsa_stream.pipeline.mosaic:mosaic_handler",
    JobKind.PUBLISH: "dsa_stream.pipeline.publish:publish_handler",
}


class LazyHandler:
    """A handler imported on its first call."""

    def __init__(self, target: str) -> None:
        self.target = target
        self._fn: Any = None

    def __call__(self, ctx: Any, run: Any) -> Any:
        """Import the handler (once) and run it."""
        if self._fn is None:
            module, _, name = self.target.partition(":")
            self._fn = getattr(importlib.import_module(module), name)
        return self._fn(ctx, run)

    def __repr__(self) -> str:
        return f"LazyHandler({self.target!r})"


def default_handlers() -> Mapping[str, LazyHandler]:
    """Every job kind the pipeline runs, with its handler."""
    return {str(kind): LazyHandler(target) for kind, target in HANDLERS.items()}
