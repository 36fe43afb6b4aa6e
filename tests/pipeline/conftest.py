"""Fixtures for the pipeline layer: a site with a migrated SQLite registry."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from dsa_stream.config import load_settings
from dsa_stream.pipeline.context import PipelineContext
from dsa_stream.registry import JobStore
from dsa_stream.site import init_site

FAST_WORKER = {
    "heartbeat_interval_s": 0.2,
    "self_fence_s": 0.8,
    "lease_s": 1.0,
    "reap_interval_s": 0.2,
    "backoff_base_s": 0.05,
    "backoff_max_s": 0.2,
}


@pytest.fixture
def site_ctx(tmp_path: Path) -> Iterator[PipelineContext]:
    site = init_site(tmp_path / "site")
    settings = load_settings(site.config_path, {"worker": FAST_WORKER})
    store = JobStore.from_settings(settings)
    yield PipelineContext.create(settings, store)
    store.close()
