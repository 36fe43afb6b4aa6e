"""Shared fixtures of the calibration tests: one simulated night, registries, fake solves.

* ``night`` (session): 3 groups, 16 antennas, 2 channels per subband, 20 min between
  groups, 3C147 transiting in group 1, a sparse random sky (0.3 sources/deg^2) and two
  bright explicit sources near the centre of each target group (0 and 2), far outside
  the calibrator's beam. Default gains, bandpasses (3 ns delays, ripples, roll-off) and
  thermal noise (SEFD 6500 Jy).
* ``db_url`` (parametrised sqlite / postgresql): a fresh, migrated registry.
* ``fake_result``: a :class:`SolveResult` with real (tiny) table directories, for
  registry tests that need no CASA.
"""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import dsa_stream.casa_env  # noqa: F401  (astropy/CASA offline first)
from dsa_stream import naming
from dsa_stream.calibration.catalog import get_calibrator
from dsa_stream.calibration.flagging import FlagSummary
from dsa_stream.calibration.model import ModelSummary
from dsa_stream.calibration.options import SolveParameters, ValidityOptions
from dsa_stream.calibration.qa import QaReport
from dsa_stream.calibration.solve import CalTableInfo, SolveResult
from dsa_stream.calibration.transits import TransitInfo
from dsa_stream.calibration.validity import validity_windows
from dsa_stream.config import Settings, load_settings
from dsa_stream.conversion import ConvertOptions, ValidationOptions, convert_group
from dsa_stream.pipeline.calibration import Roots, calibrate_handler, calibrate_job
from dsa_stream.pipeline.context import PipelineContext
from dsa_stream.pipeline.worker import Worker
from dsa_stream.registry import (
    FileFacts,
    JobStore,
    ProductSpec,
    WorkerIdentity,
    make_engine,
    register_file,
    upgrade,
)
from dsa_stream.simulate import (
    PointSourceSpec,
    SimulationOptions,
    SimulationTruth,
    SkyOptions,
    load_truth,
    plan_night,
    simulate_night,
)

T0 = datetime(2025, 10, 2, 12, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Night:
    """A simulated night and where its files are."""

    opts: SimulationOptions
    truth: SimulationTruth
    raw: Path

    def files(self, k: int) -> list[Path]:
        return [self.raw / f for f in self.truth.groups[k].files]


def night_options(out_dir: Path) -> SimulationOptions:
    base: dict[str, Any] = {
        "out_dir": out_dir,
        "n_groups": 3,
        "antennas": 16,
        "channels_per_subband": 2,
        "calibrator": "3C147",
        "calibrator_group": 1,
        "seed": 7,
        "gap_minutes": 20.0,
    }
    plan = plan_night(SimulationOptions(**base, sky=SkyOptions(density_per_deg2=0.0)))
    extra = []
    for k in (0, 2):
        ra, dec = plan.truth.groups[k].mid_phase_center_icrs_deg
        extra += [
            PointSourceSpec(
                name=f"target{k}a",
                ra_deg=ra + 0.3,
                dec_deg=dec + 0.4,
                flux_jy=4.0,
                spectral_index=-0.7,
            ),
            PointSourceSpec(
                name=f"target{k}b",
                ra_deg=ra - 0.8,
                dec_deg=dec - 0.6,
                flux_jy=2.5,
                spectral_index=-0.5,
            ),
        ]
    return SimulationOptions(
        **base, sky=SkyOptions(density_per_deg2=0.3, extra_sources=tuple(extra))
    )


@pytest.fixture(scope="session")
def night(tmp_path_factory: pytest.TempPathFactory) -> Night:
    raw = tmp_path_factory.mktemp("night") / "incoming"
    opts = night_options(raw)
    result = simulate_night(opts)
    return Night(opts=opts, truth=load_truth(result.truth_path), raw=raw)


FAST_CHECKS = ValidationOptions(casatools="off", casacore35="off")
#: Conversion without rephasing (one field per integration): rows are the UVH5 rows.
FIELDS = ConvertOptions(mode="fields", checksum_inputs=False, validation=FAST_CHECKS)


@pytest.fixture(scope="session")
def calibrator_ms(night: Night, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The calibrator group converted at 3C147 (mode icrs); copy it before changing it."""
    cal = get_calibrator("3C147")
    out = tmp_path_factory.mktemp("calms") / "cal.ms"
    opts = ConvertOptions(
        mode="icrs",
        phase_center_deg=(cal.ra_deg, cal.dec_deg),
        phase_center_name=cal.name,
        checksum_inputs=False,
        validation=FAST_CHECKS,
    )
    return convert_group(night.files(1), out, opts).ms_path


# -- registries ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("caltmpl") / "registry.sqlite3"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    engine.dispose()
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return path


@pytest.fixture(scope="session")
def pg_template(pg_server: Any) -> str:
    name = "calibration_template"
    url = pg_server.create_database(name)
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    return name


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        path = tmp_path / "registry.sqlite3"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        yield f"sqlite:///{path}"
        return
    server = request.getfixturevalue("pg_server")
    template = request.getfixturevalue("pg_template")
    name = f"c_{uuid.uuid4().hex[:12]}"
    yield server.create_database(name, template=template)
    with contextlib.suppress(Exception):
        server.drop_database(name)


# -- fake solve results (no CASA) -----------------------------------------------------------


def _fake_table(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "table.dat").write_bytes(b"fake casa table " + path.name.encode())
    return path


def make_fake_result(
    out_dir: Path,
    *,
    group_start: datetime,
    calibrator: str = "3C147",
    dec_deg: float = 49.86,
    passed: bool = True,
    validity: ValidityOptions | None = None,
) -> SolveResult:
    """A solve result whose transit is the group's middle, with tiny table directories."""
    transit = group_start + timedelta(seconds=154.6)
    set_name = naming.format_calset_name(
        naming.CalSetName(naming.group_key(group_start), calibrator)
    )
    set_dir = out_dir / set_name
    windows = validity_windows(transit, validity or ValidityOptions())
    tables = tuple(
        CalTableInfo(
            table_type=kind,
            path=_fake_table(set_dir / naming.caltable_filename(set_name, kind)),
            n_rows=117,
            window=windows.get(kind),  # type: ignore[call-overload]
        )
        for kind in ("prebandpass", "bandpass", "gain")
    )
    info = TransitInfo(
        name=calibrator,
        ra_deg=85.65,
        dec_deg=49.85,
        flux_jy=22.1,
        transit_mjd=0.0,
        transit_utc=transit.isoformat(),
        transit_in_group=True,
        closest_separation_deg=0.0,
        peak_response=1.0,
        mean_response=0.98,
        peak_response_band_edges=(1.0, 1.0),
        apparent_flux_jy=22.1,
        usable=True,
        reason="",
    )
    qa = QaReport(
        passed=passed,
        problems=() if passed else ("bandpass flagged 40.0% > 20%",),
        warnings=(),
        bandpass_flagged=0.0 if passed else 0.4,
        gain_flagged=0.0,
        bandpass_snr_median=500.0,
        gain_snr_median=2000.0,
        n_antennas_data=16,
        n_antennas_solved=16,
        outliers=(),
        phase_noise_deg_median=0.1,
        refant_used=("31",),
        antennas=(),
    )
    return SolveResult(
        set_name=set_name,
        group_key=naming.group_key(group_start),
        calibrator=info,
        transit=transit,
        obs_start=group_start,
        obs_end=group_start + timedelta(seconds=309.2),
        dec_deg=dec_deg,
        inputs=(),
        ms_path=set_dir / naming.calset_ms_filename(set_name),
        tables=tables,
        refant="31",
        refant_candidates=("31", "25"),
        model=ModelSummary(
            calibrator=calibrator,
            flux_min_jy=21.0,
            flux_max_jy=23.2,
            response_min=0.94,
            response_max=1.0,
            response_mean=0.98,
            model_min_jy=19.8,
            model_max_jy=23.2,
        ),
        flagging=FlagSummary(
            flagger="none",
            mad_clip=True,
            initial_fraction=0.0,
            final_fraction=0.0,
            steps={},
            dead_antennas=(),
            antenna_flagged={"31": 0.0},
        ),
        qa=qa,
        plots=(),
        parameters=SolveParameters(),
        casa_calls=(),
        software={},
        timings_s={},
    )


@pytest.fixture
def fake_result(tmp_path: Path) -> Callable[..., SolveResult]:
    """Build fake solve results under ``tmp_path/site/products/caltables``."""
    out = tmp_path / "site" / "products" / naming.CALTABLES_DIRNAME

    def make(group_start: datetime, **kw: Any) -> SolveResult:
        return make_fake_result(out, group_start=group_start, **kw)

    return make


# -- the night through the registry and the worker (CASA) ------------------------------


@dataclass(frozen=True)
class Run:
    settings: Settings
    store: JobStore
    keys: list[str]
    ms: dict[str, Path]


def _register_and_convert(night: Night, settings: Settings, store: JobStore) -> Run:
    keys, ms_paths = [], {}
    for g in night.truth.groups:
        start = datetime.fromisoformat(g.start_utc + "+00:00")
        for name, sb in zip(g.files, g.subbands, strict=True):
            path = night.raw / name
            register_file(
                store,
                FileFacts(
                    root_id="incoming",
                    rel_path=name,
                    size=path.stat().st_size,
                    mtime_ns=path.stat().st_mtime_ns,
                    obs_time=start,
                    subband=sb,
                    group_key=g.key,
                    dec_deg=night.truth.pointing_dec_app_deg,
                ),
            )
        keys.append(g.key)
    # the convert stage, by hand: claim each convert job, write the MS, commit it
    ident = WorkerIdentity.current("test")
    worker_id = store.start_worker(ident).worker_id
    roots = Roots.of(settings)
    for k, key in enumerate(keys):
        claim = store.claim(worker_id, kinds=["convert"])
        assert claim is not None and claim.payload["group_key"] == key
        out = settings.paths.resolve("products") / "ms" / f"{key}.ms"
        res = convert_group(night.files(k), out, FIELDS)
        root_id, rel = roots.split(out)
        store.complete(
            claim,
            products=[
                ProductSpec(
                    kind="ms",
                    logical_key=f"ms:{key}",
                    root_id=root_id,
                    rel_path=rel,
                    manifest_hash="test",
                    obs_start=claim.order_key,
                    obs_end=claim.order_key,
                    group_id=claim.group_id,
                )
            ],
            next_jobs=[calibrate_job(claim.group_id, key, claim.order_key, "converted")],
        )
        ms_paths[key] = res.ms_path
    store.stop_worker(worker_id)
    return Run(settings, store, keys, ms_paths)


@pytest.fixture(scope="session")
def run(night: Night, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    """The night through the registry and the worker's calibrate stage (see test_pipeline)."""
    site = tmp_path_factory.mktemp("site")
    settings = load_settings(
        overrides={
            "paths": {"root": str(site), "incoming": str(night.raw)},
            "calibrate": {"qa": {"min_antennas": 10}},
        }
    )
    engine = make_engine(settings.registry_url())
    upgrade(engine)
    store = JobStore(engine, settings.worker)
    result = _register_and_convert(night, settings, store)
    ctx = PipelineContext.create(settings, store)
    report = Worker(ctx, {"calibrate": calibrate_handler}, kinds=["calibrate"], poll_s=0.1).run(
        burst=True
    )
    assert report.failed == 0 and report.lost == 0, report
    assert report.succeeded == 4  # 3 groups + group 0 again once the set was registered
    yield result
    store.close()
