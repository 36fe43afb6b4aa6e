"""Table sets in the registry: registration, selection, supersession, waiting, skewed clocks.

Every test runs on SQLite and on PostgreSQL. Solves are faked (tiny table directories):
what is tested here is the bookkeeping, not CASA.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, select

from dsa_stream import naming
from dsa_stream.calibration.geometry import SECONDS_PER_DAY
from dsa_stream.calibration.observation import GroupObservation, datetime_to_mjd
from dsa_stream.calibration.options import SelectionOptions
from dsa_stream.calibration.solve import SolveResult
from dsa_stream.config import Settings, load_settings
from dsa_stream.pipeline.calibration import (
    AWAITING_CALIBRATION,
    CALIBRATION_AVAILABLE,
    Roots,
    list_sets,
    load_candidates,
    register_manual,
    select_for_observation,
    waiting_groups,
)
from dsa_stream.registry import JobStore, make_engine
from dsa_stream.registry.models import calibrations, groups, job_events, jobs, products

T0 = datetime(2025, 10, 2, 12, 49, 11, tzinfo=UTC)
H = timedelta(hours=1)


@pytest.fixture
def site(tmp_path: Path, db_url: str) -> Settings:
    return load_settings(
        overrides={"paths": {"root": str(tmp_path / "site")}, "registry": {"url": db_url}}
    )


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime(2026, 3, 1, tzinfo=UTC))


@pytest.fixture
def store(site: Settings, clock: Clock) -> Iterator[JobStore]:
    s = JobStore(make_engine(site.registry_url()), site.worker, clock=clock)
    yield s
    s.close()


def observation(mid: datetime, dec: float = 49.86) -> GroupObservation:
    """A group observed around ``mid`` (24 integrations of 12.88 s)."""
    step = 12.884902 / SECONDS_PER_DAY
    t_mid = datetime_to_mjd(mid)
    times = tuple(t_mid + (k - 11.5) * step for k in range(24))
    return GroupObservation(
        source="ms",
        paths=(Path("/nowhere.ms"),),
        times_mjd=times,
        integration_s=12.884902,
        pointing_dec_deg=dec,
        centres_icrs_deg=tuple((0.0, dec) for _ in times),
        freq_min_hz=1.31e9,
        freq_max_hz=1.5e9,
        n_channels=32,
    )


def choose(store: JobStore, site: Settings, mid: datetime, dec: float = 49.86) -> Any:
    with store.engine.connect() as conn:
        return select_for_observation(
            conn, observation(mid, dec), Roots.of(site), SelectionOptions()
        )


def test_registration_writes_products_windows_and_a_manual_job(
    store: JobStore, site: Settings, fake_result: Callable[..., SolveResult]
) -> None:
    result = fake_result(T0)
    reg = register_manual(store, result, Roots.of(site), site)
    assert (
        reg.version == 1
        and reg.status == "valid"
        and set(reg.product_ids)
        == {
            "bandpass",
            "gain",
        }
    )
    with store.engine.connect() as conn:
        prods = conn.execute(select(products).order_by(products.c.id)).all()
        cals = conn.execute(select(calibrations).order_by(calibrations.c.id)).all()
        job = conn.execute(select(jobs)).one()
        events = conn.execute(select(job_events.c.event).order_by(job_events.c.id)).scalars().all()
    assert [p.logical_key for p in prods] == [
        f"caltable:{result.set_name}:bandpass",
        f"caltable:{result.set_name}:gain",
    ]
    assert all(p.kind == "caltable" and p.root_id == "products" for p in prods)
    assert prods[0].rel_path == f"caltables/{result.set_name}/{result.set_name}.B"
    assert prods[0].obs_start == T0 and len(prods[0].manifest_hash) == 64
    transit = result.transit
    for cal in cals:
        assert cal.status == "valid" and cal.calibrator == "3C147"
        assert math.isclose(cal.dec_deg, 49.86)
        assert cal.valid_from_obs == transit - 12 * H and cal.valid_to_obs == transit + 12 * H
        assert cal.qa["refant"] == "31" and cal.qa["source_group"] == "2025-10-02T12:49:11"
        assert cal.qa["parameters"]["bandpass_minsnr"] == 5.0
        assert cal.qa["record"].startswith("products:caltables/")
    assert {cal.qa["table_type"] for cal in cals} == {"bandpass", "gain"}
    assert job.kind == "calibrate" and job.state == "succeeded"
    assert job.dedupe_key == f"calibrate:manual:{result.set_name}:v1"
    assert events == ["enqueued", "claimed", "succeeded"]
    with store.engine.connect() as conn:
        sets = list_sets(conn, Roots.of(site))
    assert len(sets) == 1 and sets[0].set_name == result.set_name
    assert sets[0].apply_order() == (result.table("bandpass").path, result.table("gain").path)


def test_nearest_transit_wins_over_the_newest_registration(
    store: JobStore, site: Settings, clock: Clock, fake_result: Callable[..., SolveResult]
) -> None:
    roots = Roots.of(site)
    near = fake_result(T0)  # transit T0 + 2.6 min
    far = fake_result(T0 + 6 * H)
    clock.now = datetime(2026, 1, 1, tzinfo=UTC)
    register_manual(store, near, roots, site)
    clock.now = datetime(2027, 1, 1, tzinfo=UTC)  # registered a year later: newest
    register_manual(store, far, roots, site)
    sel = choose(store, site, T0 + 2 * H)
    assert sel.chosen.set_name == near.set_name
    assert [r.set_name for r in sel.rejected] == [far.set_name]
    sel = choose(store, site, T0 + 4 * H)  # nearer to the later transit
    assert sel.chosen.set_name == far.set_name
    sel = choose(store, site, T0 - 11 * H)  # before the first transit: bidirectional
    assert sel.chosen.set_name == near.set_name
    assert choose(store, site, T0 - 13 * H).chosen is None
    assert choose(store, site, T0 + 2 * H, dec=52.0).chosen is None


def test_qa_failed_sets_are_registered_rejected_and_never_applied(
    store: JobStore, site: Settings, fake_result: Callable[..., SolveResult]
) -> None:
    roots = Roots.of(site)
    bad = fake_result(T0, passed=False)
    reg = register_manual(store, bad, roots, site)
    assert reg.status == "rejected"
    sel = choose(store, site, T0)
    assert sel.chosen is None and "rejected" in sel.rejected[0].reason
    good_far = fake_result(T0 + 8 * H)
    register_manual(store, good_far, roots, site)
    sel = choose(store, site, T0)
    assert sel.chosen.set_name == good_far.set_name
    with store.engine.connect() as conn:
        statuses = conn.execute(select(calibrations.c.status)).scalars().all()
    assert sorted(statuses) == ["rejected", "rejected", "valid", "valid"]


def test_solving_again_supersedes_the_older_version(
    store: JobStore, site: Settings, fake_result: Callable[..., SolveResult]
) -> None:
    roots = Roots.of(site)
    first = register_manual(store, fake_result(T0), roots, site)
    second = register_manual(store, fake_result(T0), roots, site)
    assert (first.version, second.version, second.superseded) == (1, 2, 2)
    sel = choose(store, site, T0)
    assert (sel.chosen.set_name, sel.chosen.version) == (first.set_name, 2)
    with store.engine.connect() as conn:
        cands = load_candidates(conn, T0, roots)
    assert {(c.version, c.tables[0].status) for c in cands} == {(1, "superseded"), (2, "valid")}


@pytest.mark.parametrize("skew", [timedelta(days=-400), timedelta(0), timedelta(days=3650)])
def test_a_skewed_clock_changes_nothing(
    store: JobStore,
    site: Settings,
    clock: Clock,
    fake_result: Callable[..., SolveResult],
    skew: timedelta,
) -> None:
    clock.now = datetime(2025, 10, 2, 13, 0, tzinfo=UTC) + skew
    roots = Roots.of(site)
    result = fake_result(T0)
    register_manual(store, result, roots, site)
    register_manual(store, fake_result(T0 + 20 * H), roots, site)
    with store.engine.connect() as conn:
        windows = conn.execute(
            select(
                calibrations.c.valid_from_obs,
                calibrations.c.valid_to_obs,
                calibrations.c.created_at,
            )
        ).all()
    assert windows[0][:2] == (result.transit - 12 * H, result.transit + 12 * H)
    assert windows[0].created_at == clock.now  # bookkeeping follows the clock, science does not
    assert choose(store, site, T0 + 5 * H).chosen.set_name == result.set_name
    assert choose(store, site, T0 + 15 * H).chosen.set_name != result.set_name


def _group(store: JobStore, key: str, dec: float, stage: str | None) -> int:
    start = naming.parse_group_key(key)
    with store.transaction() as txn:
        return int(
            txn.conn.execute(
                insert(groups)
                .values(
                    group_key=key,
                    obs_time=start,
                    dec_deg=dec,
                    state="processing",
                    stage=stage,
                    first_seen_at=txn.now,
                    updated_at=txn.now,
                )
                .returning(groups.c.id)
            ).scalar_one()
        )


def test_registering_a_set_releases_the_waiting_groups_it_covers(
    store: JobStore, site: Settings, fake_result: Callable[..., SolveResult]
) -> None:
    covered = _group(store, "2025-10-02T08:00:00", 49.86, AWAITING_CALIBRATION)
    other_dec = _group(store, "2025-10-02T09:00:00", 30.0, AWAITING_CALIBRATION)
    too_early = _group(store, "2025-10-01T20:00:00", 49.86, AWAITING_CALIBRATION)
    busy = _group(store, "2025-10-02T10:00:00", 49.86, "convert")
    with store.engine.connect() as conn:
        assert [w[0] for w in waiting_groups(conn)] == [
            "2025-10-01T20:00:00",
            "2025-10-02T08:00:00",
            "2025-10-02T09:00:00",
        ]
    result = fake_result(T0)
    register_manual(store, result, Roots.of(site), site)
    with store.engine.connect() as conn:
        stages = dict(conn.execute(select(groups.c.id, groups.c.stage)).all())
        queued = conn.execute(
            select(jobs.c.dedupe_key, jobs.c.group_id, jobs.c.payload).where(
                jobs.c.state == "queued"
            )
        ).all()
    assert stages[covered] == CALIBRATION_AVAILABLE
    assert stages[other_dec] == stages[too_early] == AWAITING_CALIBRATION
    assert stages[busy] == "convert"
    assert [(q.dedupe_key, q.group_id) for q in queued] == [
        (f"calibrate:2025-10-02T08:00:00:{result.set_name}:v1", covered)
    ]
    assert queued[0].payload["group_key"] == "2025-10-02T08:00:00"
