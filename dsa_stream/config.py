"""Configuration: one pydantic settings model with one precedence order.

Precedence, lowest to highest:

1. defaults in the models below;
2. a versioned YAML file (``config/dsa-stream.yaml`` in the repository is the
   annotated default; ``dsa-stream init`` writes one per site);
3. ``DSA_STREAM_*`` environment variables, nested with ``__``
   (``DSA_STREAM_PATHS__INCOMING=/data/incoming``);
4. command-line flags (passed as ``overrides``).

Relative paths in a YAML file are relative to the directory holding that file;
relative paths from the environment or flags are relative to the working
directory. Every other path in the configuration is relative to ``paths.root``.
"""

from __future__ import annotations

import hashlib
import json
import os
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from dsa_stream import naming
from dsa_stream.exceptions import ConfigError
from dsa_stream.imaging.options import ImagingOptions
from dsa_stream.mosaic.options import MosaicOptions

#: The configuration format this code reads. Bump on incompatible changes.
CONFIG_FORMAT_VERSION = 1
#: Environment variable naming the configuration file when ``--config`` is absent.
CONFIG_ENV = "DSA_STREAM_CONFIG"
ENV_PREFIX = "DSA_STREAM_"


class Section(BaseModel):
    """Base of every configuration section: immutable, unknown keys rejected."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)


class PathsConfig(Section):
    """Where a site keeps its data. Relative entries are relative to ``root``."""

    root: Path = Path(".")
    """Site root directory."""
    incoming: Path = Path("incoming")
    """Directory the correlator (or rsync) writes subband files into."""
    staging: Path = Path("staging")
    """Work area for products being made (same filesystem as ``products`` is fastest)."""
    products: Path = Path("products")
    """Published products."""
    logs: Path = Path("logs")
    """Daemon and stage logs."""
    quarantine: Path = Path("quarantine")
    """Inputs and leftovers set aside with a recorded reason."""

    def resolve(
        self, name: Literal["incoming", "staging", "products", "logs", "quarantine"]
    ) -> Path:
        """Absolute path of one site directory."""
        value: Path = getattr(self, name)
        return value if value.is_absolute() else (self.root / value)

    def site_dirs(self) -> dict[str, Path]:
        """All site directories by name (absolute)."""
        names = ("incoming", "staging", "products", "logs", "quarantine")
        return {n: self.resolve(n) for n in names}  # type: ignore[arg-type]


class RegistryConfig(Section):
    """The registry database (SQLite file by default, PostgreSQL for several hosts)."""

    url: str | None = None
    """SQLAlchemy URL. Unset means the embedded SQLite file ``<root>/registry.sqlite3``.
    A relative SQLite path (``sqlite:///registry.sqlite3``) is relative to ``root``."""
    busy_timeout_s: float = Field(10.0, gt=0)
    """SQLite busy timeout; kept well below the job lease so heartbeats never starve."""
    connect_timeout_s: float = Field(10.0, gt=0)
    """PostgreSQL connect timeout."""
    statement_timeout_s: float = Field(30.0, gt=0)
    """PostgreSQL statement_timeout."""
    lock_timeout_s: float = Field(5.0, gt=0)
    """PostgreSQL lock_timeout."""
    idle_in_transaction_timeout_s: float = Field(60.0, gt=0)
    """PostgreSQL idle_in_transaction_session_timeout."""


class ConvertConfig(Section):
    """How the pipeline converts a group to a Measurement Set (``dsa_stream.conversion``)."""

    channel_average: int = Field(1, ge=1)
    """Average this many adjacent channels while converting (must divide 48); 1 keeps
    the native 244 kHz channels (no bandwidth smearing)."""
    weight_spectrum: bool = False
    """Write WEIGHT_SPECTRUM (DSA-110 nsamples are uniform; it costs 0.7 GB per group)."""
    checksum_inputs: bool = True
    """Record xxh3 checksums of the input files in the MS manifest."""
    read_threads: int = Field(2, ge=1, le=16)
    """Threads reading subband files."""


class ProductsConfig(Section):
    """What is checked and published (``dsa_stream.pipeline``, ``dsa_stream.products``)."""

    catalog: Path | None = None
    """Sources image and mosaic QA compare against: a simulator ``truth.json``, a CSV
    (``ra_deg,dec_deg,flux_jy[,name,ref_freq_hz,spectral_index]``) or a JSON list;
    relative to ``paths.root``; null: no source checks (noise, beam and coverage only)."""
    publish_kinds: list[Literal["image", "mosaic"]] = ["image", "mosaic"]
    """Product kinds published from staging to ``paths.products`` (calibration tables
    are written there directly; Measurement Sets stay in staging)."""
    publish_requires_qa: bool = True
    """Publish only products whose QA passed (a failed product stays in staging,
    recorded with its QA figures)."""

    def catalog_path(self, root: Path) -> Path | None:
        """Absolute path of the catalogue (None when unset)."""
        if self.catalog is None:
            return None
        return self.catalog if self.catalog.is_absolute() else root / self.catalog


class CalibrationQaConfig(Section):
    """When a solved table set passes QA (reference-pipelines §4.2); failed sets are not applied."""

    max_bandpass_flagged: float = Field(0.2, ge=0, le=1)
    """Largest flagged fraction of the bandpass solutions (above 20% is 'critical')."""
    warn_bandpass_flagged: float = Field(0.05, ge=0, le=1)
    """Flagged bandpass fraction above which a warning is recorded."""
    max_gain_flagged: float = Field(0.3, ge=0, le=1)
    """Largest flagged fraction of the gain solutions."""
    min_snr: float = Field(3.0, ge=0)
    """Smallest median SNR of the bandpass and of the gains."""
    warn_snr: float = Field(10.0, ge=0)
    """Median SNR below which a warning is recorded."""
    min_antennas: int = Field(10, ge=1)
    """Fewest antennas with bandpass and gain solutions."""
    outlier_mad: float = Field(5.0, gt=0)
    """Gain amplitudes this many robust sigmas from the array median are outliers."""
    max_outlier_fraction: float = Field(0.2, ge=0, le=1)
    """Largest fraction of outlier antennas."""
    max_phase_noise_deg: float = Field(20.0, gt=0)
    """Largest median channel-to-channel bandpass phase noise (deg)."""


class CalibrateConfig(Section):
    """Calibration: transits, solve, QA, validity windows, selection and application.

    Mapped onto the stage options of :mod:`dsa_stream.calibration.options` by
    :mod:`dsa_stream.pipeline.calibration`; docs/calibration.md explains every default.
    """

    min_apparent_flux_jy: float = Field(2.0, ge=0)
    """A calibrator group needs a catalogue source with flux x peak beam response above this."""
    min_beam_response: float = Field(0.3, ge=0, le=1)
    """... and a peak beam response above this, with its transit inside the group."""
    calibrators: tuple[str, ...] = ()
    """Restrict calibrators to these catalogue names (empty: the whole catalogue)."""
    flagger: Literal["auto", "aoflagger", "casa", "mad", "none"] = "auto"
    """auto: AOFlagger when installed, else the numpy MAD clip; casa: tfcrop + rflag."""
    mad_threshold: float = Field(7.0, gt=0)
    """MAD clip threshold (robust sigmas)."""
    refant: tuple[str, ...] = ()
    """Reference antennas by name, preferred first (empty: least flagged, central)."""
    prebandpass_solint: str = "60s"
    """Solution interval of the phase-only solve used during the bandpass solve."""
    bandpass_minsnr: float = Field(5.0, ge=0)
    """Minimum SNR of a bandpass solution."""
    bandpass_fillgaps: int = Field(3, ge=0)
    """Flagged bandpass channels interpolated over."""
    gain_solint: str = "inf"
    """Solution interval of the amplitude + phase gains (inf: one per group)."""
    gain_minsnr: float = Field(3.0, ge=0)
    """Minimum SNR of a gain solution."""
    uvrange: str = ""
    """CASA uvrange of the solves (empty: all baselines)."""
    channel_average: int = Field(1, ge=1)
    """Channels averaged in the calibrator MS (targets must be averaged the same way)."""
    bandpass_validity_hours: float = Field(12.0, gt=0, le=72)
    """Bandpass tables are valid this long before and after the calibrator transit."""
    gain_validity_hours: float = Field(12.0, gt=0, le=72)
    """Gain tables are valid this long before and after the calibrator transit."""
    dec_tolerance_deg: float = Field(1.0, gt=0)
    """A target group uses tables solved within this Dec of its own pointing."""
    no_calibration_policy: Literal["wait", "image-uncalibrated"] = "wait"
    """No valid tables: wait (stage awaiting_calibration) or image uncalibrated (flagged)."""
    plots: bool = True
    """Write bandpass and gain PNGs next to the tables."""
    solve_timeout_s: float = Field(1800.0, gt=0)
    """Time limit of each CASA child process of a solve."""
    apply_timeout_s: float = Field(1200.0, gt=0)
    """Time limit of the applycal child process."""
    qa: CalibrationQaConfig = CalibrationQaConfig()


#: Hard wall-clock budget of one attempt, per job kind (initial guesses until the
#: p99 of each stage is measured; then set to >= 3 x p99). Reliability §7.5.
DEFAULT_STAGE_TIMEOUTS_S: dict[str, int] = {
    "convert": 1200,
    "calibrate": 1800,
    "image": 2700,
    "mosaic": 5400,
    "register": 600,
    "finalize": 600,
    "publish": 600,
    "cleanup": 600,
    "reconcile": 600,
}


class WorkerConfig(Section):
    """Job leases, heartbeats, the reaper and retries (numbers of reliability §7.5)."""

    heartbeat_interval_s: float = Field(10.0, gt=0)
    """A worker renews its own row and its job's lease this often."""
    lease_s: float = Field(60.0, gt=0)
    """Lease TTL of a claimed job; the reaper requeues the job when it lapses."""
    self_fence_s: float = Field(45.0, gt=0)
    """A worker stops its stage when no renewal succeeded for this long (< ``lease_s``)."""
    reap_interval_s: float = Field(15.0, gt=0)
    """How often the reaper looks for lapsed leases and dead workers."""
    stale_worker_leases: float = Field(3.0, ge=1)
    """A worker whose heartbeat is older than this many leases is declared dead."""
    reap_batch: int = Field(100, ge=1)
    """At most this many jobs are reaped per reaper pass."""
    max_attempts: int = Field(5, ge=1)
    """Attempts of a job before it goes to ``dead`` (lease expiries count)."""
    backoff_base_s: float = Field(30.0, ge=0)
    """Retry delay after the first failed attempt; doubles per attempt."""
    backoff_max_s: float = Field(900.0, ge=0)
    """Upper bound of the retry delay before jitter."""
    backoff_jitter: float = Field(0.2, ge=0, lt=1)
    """The delay is multiplied by U(1 - jitter, 1 + jitter)."""
    stage_timeouts_s: dict[str, int] = Field(default_factory=lambda: dict(DEFAULT_STAGE_TIMEOUTS_S))
    """Hard wall-clock budget of one attempt, per job kind (seconds)."""

    @model_validator(mode="after")
    def _lease_ordering(self) -> WorkerConfig:
        if not self.heartbeat_interval_s < self.self_fence_s < self.lease_s:
            raise ValueError(
                "worker timing must satisfy heartbeat_interval_s < self_fence_s < lease_s "
                f"(got {self.heartbeat_interval_s} / {self.self_fence_s} / {self.lease_s})"
            )
        return self


class GroupingConfig(Section):
    """How subband files are assembled into observation groups."""

    n_subbands: int = Field(16, ge=1)
    """Distinct subbands that make a group complete."""
    complete_timeout_s: float = Field(600.0, gt=0)
    """A group still collecting this long after its first file goes to the policy."""
    incomplete_policy: Literal["process", "quarantine"] = "process"
    """``process`` converts a timed-out group with at least ``min_subbands``; else quarantine."""
    min_subbands: int = Field(12, ge=1)
    """Fewest subbands a timed-out group may be processed with (policy ``process``)."""
    dec_tolerance_deg: float | None = Field(0.5, gt=0)
    """A file whose Dec differs from its group's by more is quarantined (None: no check)."""

    @model_validator(mode="after")
    def _min_le_n(self) -> GroupingConfig:
        if self.min_subbands > self.n_subbands:
            raise ValueError(
                f"min_subbands ({self.min_subbands}) exceeds n_subbands ({self.n_subbands})"
            )
        return self


class WatcherConfig(Section):
    """Finding subband files in ``paths.incoming``: events, reconcile scans, settle, validation.

    Numbers of reliability §7.5. Group rules (subbands, timeout, policy) are in ``grouping``.
    """

    use_observer: bool = True
    """Use filesystem events (watchdog) to find files fast; false relies on the scan alone."""
    use_polling: bool = False
    """Poll the directory instead of inotify (network filesystems: NFS, CIFS)."""
    poll_interval_s: float = Field(1.0, gt=0)
    """Interval of the polling observer."""
    settle_s: float = Field(10.0, ge=0)
    """A file is inspected once its size and mtime stayed unchanged this long
    (>= 60 s on NFS, above the attribute cache's acregmax)."""
    validation_grace_s: float = Field(600.0, ge=0)
    """A file that is still invalid this long after its last change is rejected."""
    retry_backoff_s: float = Field(5.0, gt=0)
    """First delay before re-inspecting a file that may still be being written; doubles."""
    retry_backoff_max_s: float = Field(60.0, gt=0)
    """Longest delay between re-inspections."""
    reconcile_interval_s: float = Field(180.0, gt=0)
    """Period of the reconcile scan of the directory (the source of truth)."""
    expire_interval_s: float = Field(60.0, gt=0)
    """Period of the incomplete-group timeout pass."""
    batch_size: int = Field(32, ge=1)
    """Files inspected per loop iteration (bounded work between checks of the stop flag)."""
    checksum: bool = True
    """Record the xxh64 of every file (reads each file once more)."""
    filename_tolerance_s: float = Field(60.0, ge=0)
    """Largest allowed difference between a file name's time and the header's start."""
    expected_integrations: int = Field(24, ge=1)
    """Integrations a complete subband file holds."""


class LoggingConfig(Section):
    """Logging of the command-line tools and the daemon."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    """Level before ``-v``/``-q`` adjust it."""
    format: Literal["text", "json"] = "text"
    """``json`` writes one JSON object per line (for log shippers)."""


#: Site directories whose free space the daemon's disk guard may watch.
GUARDED_ROOTS = ("incoming", "staging", "products", "logs", "quarantine")


class DaemonConfig(Section):
    """The streaming daemon (``dsa-stream run``): polling, guards, health and metrics.

    Disk and memory sizes are GiB (2**30 bytes). The guards only pause claiming:
    a job is never failed because space or memory is short.
    """

    poll_s: float = Field(1.0, gt=0)
    """Idle wait of the worker between claims (and between checks while paused)."""
    supervisor_interval_s: float = Field(1.0, gt=0)
    """Period of the supervisor: thread checks, operator kill requests, systemd watchdog."""
    status_interval_s: float = Field(10.0, gt=0)
    """The daemon's status file (read by ``dsa-stream status``) is refreshed this often."""
    http_host: str = "127.0.0.1"
    """Address of the ``/health`` and ``/metrics`` endpoint (keep it on loopback)."""
    http_port: int = Field(9311, ge=0, le=65535)
    """Port of the ``/health`` and ``/metrics`` endpoint; 0 turns it off (never in --burst)."""
    min_free_gib: dict[str, float] = Field(
        default_factory=lambda: {"staging": 20.0, "products": 20.0}
    )
    """Claiming pauses while one of these site directories has less free space (GiB)."""
    disk_resume_margin_gib: float = Field(2.0, ge=0)
    """A paused daemon resumes once every guarded directory has this much more than its
    threshold (hysteresis: no flapping around the threshold)."""
    memory_guard: bool = True
    """Refuse to start a stage whose memory estimate exceeds the available memory."""
    memory_estimates_gib: dict[str, float] = Field(
        default_factory=lambda: {"convert": 2.0, "calibrate": 3.5, "image": 6.0, "mosaic": 2.5}
    )
    """Peak memory of one stage per job kind (GiB): measured peak RSS at full size plus a
    margin (docs/benchmarks.md)."""
    memory_default_gib: float = Field(1.0, ge=0)
    """Memory estimate of job kinds not listed in ``memory_estimates_gib``."""

    @field_validator("min_free_gib")
    @classmethod
    def _known_roots(cls, v: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(v) - set(GUARDED_ROOTS))
        if unknown:
            raise ValueError(f"unknown site directories {unknown} (known: {list(GUARDED_ROOTS)})")
        if any(x < 0 for x in v.values()):
            raise ValueError("free-space thresholds must be >= 0")
        return v

    @field_validator("memory_estimates_gib")
    @classmethod
    def _positive_estimates(cls, v: dict[str, float]) -> dict[str, float]:
        if any(x < 0 for x in v.values()):
            raise ValueError("memory estimates must be >= 0")
        return v


class Settings(BaseSettings):
    """The resolved configuration of one dsa-stream site."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
        use_attribute_docstrings=True,
    )

    version: int = CONFIG_FORMAT_VERSION
    """Configuration format version."""
    paths: PathsConfig = PathsConfig()
    registry: RegistryConfig = RegistryConfig()
    convert: ConvertConfig = ConvertConfig()
    products: ProductsConfig = ProductsConfig()
    logging: LoggingConfig = LoggingConfig()
    worker: WorkerConfig = WorkerConfig()
    calibrate: CalibrateConfig = CalibrateConfig()
    grouping: GroupingConfig = GroupingConfig()
    watcher: WatcherConfig = WatcherConfig()
    daemon: DaemonConfig = DaemonConfig()
    image: ImagingOptions = ImagingOptions()
    """Imaging backend, parameters, primary beam and QA (``dsa_stream.imaging.options``)."""
    mosaic: MosaicOptions = MosaicOptions()
    """Mosaic windows, coadd and QA (``dsa_stream.mosaic.options``)."""

    @field_validator("version")
    @classmethod
    def _known_version(cls, v: int) -> int:
        if v != CONFIG_FORMAT_VERSION:
            raise ValueError(
                f"configuration format version {v} is not supported "
                f"(this dsa-stream reads version {CONFIG_FORMAT_VERSION})"
            )
        return v

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Flags (init kwargs) > environment > YAML > defaults."""
        return (init_settings, env_settings, _YamlSource(settings_cls))

    def registry_url(self) -> str:
        """The SQLAlchemy URL of the registry, with relative SQLite paths made absolute."""
        url = self.registry.url
        if url is None:
            return f"sqlite:///{self.paths.root / naming.SITE_REGISTRY_FILENAME}"
        prefix = "sqlite:///"
        if url.startswith(prefix) and not url.startswith(prefix + "/"):
            rel = url[len(prefix) :]
            if rel and not rel.startswith(":memory:") and not rel.startswith("file:"):
                return f"{prefix}{self.paths.root / rel}"
        return url

    def config_hash(self) -> str:
        """Short SHA-256 of the resolved configuration (recorded with every product)."""
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def to_yaml(self) -> str:
        """The resolved configuration as YAML."""
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


#: The parsed YAML document of the load in progress (per thread / task).
_yaml_document: ContextVar[dict[str, Any] | None] = ContextVar(
    "dsa_stream_yaml_document", default=None
)


class _YamlSource(PydanticBaseSettingsSource):
    """Settings source returning the YAML document of the current :func:`load_settings`."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return (_yaml_document.get() or {}).get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(_yaml_document.get() or {})


def read_yaml(path: Path) -> dict[str, Any]:
    """Read a configuration YAML file, making its relative paths absolute.

    Raises:
        ConfigError: if the file is missing, not YAML, or not a mapping.
    """
    try:
        doc = yaml.safe_load(path.read_text())
    except FileNotFoundError as exc:
        raise ConfigError(f"configuration file not found: {path}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"configuration file {path} is not valid YAML: {exc}") from exc
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise ConfigError(f"configuration file {path} must hold a mapping at the top level")
    base = path.resolve().parent
    paths = doc.get("paths")
    if isinstance(paths, dict):
        root = Path(paths.get("root", "."))
        paths["root"] = str(root if root.is_absolute() else (base / root).resolve())
    else:
        doc.setdefault("paths", {})["root"] = str(base)
    return doc


def config_path_from_env() -> Path | None:
    """The configuration file named by ``$DSA_STREAM_CONFIG``, if any."""
    value = os.environ.get(CONFIG_ENV)
    return Path(value) if value else None


def _absolutize_root(data: dict[str, Any]) -> None:
    paths = data.get("paths")
    if isinstance(paths, dict) and "root" in paths:
        paths["root"] = str(Path(paths["root"]).expanduser().resolve())


def load_settings(
    config_path: Path | None = None, overrides: dict[str, Any] | None = None
) -> Settings:
    """Resolve the configuration: defaults < YAML < environment < ``overrides``.

    Args:
        config_path: YAML file; when None, ``$DSA_STREAM_CONFIG`` is used if set,
            otherwise no file is read.
        overrides: Nested mapping from command-line flags (highest precedence).

    Raises:
        ConfigError: with every validation problem listed.
    """
    path = config_path or config_path_from_env()
    doc = read_yaml(path) if path is not None else {}
    over = json.loads(json.dumps(overrides or {}, default=str))
    _absolutize_root(over)
    token = _yaml_document.set(doc)
    try:
        settings = Settings(**over)
    except ValidationError as exc:
        where = f" (file {path})" if path else ""
        raise ConfigError(f"invalid configuration{where}:\n{exc}") from exc
    finally:
        _yaml_document.reset(token)
    if not settings.paths.root.is_absolute():
        root = settings.paths.root.expanduser().resolve()
        settings = settings.model_copy(
            update={"paths": settings.paths.model_copy(update={"root": root})}
        )
    return settings


def site_config_yaml() -> str:
    """The YAML document ``dsa-stream init`` writes for a new site (position-independent)."""
    lines = [
        "# dsa-stream site configuration (written by `dsa-stream init`).",
        "# Precedence: defaults < this file < DSA_STREAM_* environment < command-line flags.",
        "# Relative paths are relative to this file's directory.",
        f"version: {CONFIG_FORMAT_VERSION}",
        "paths:",
        "  root: .",
        "  incoming: incoming",
        "  staging: staging",
        "  products: products",
        "  logs: logs",
        "  quarantine: quarantine",
        "registry:",
        "  # embedded SQLite registry next to this file; for several hosts use e.g.",
        "  # url: postgresql+psycopg://dsa:secret@dbhost/dsa_stream",
        f"  url: sqlite:///{naming.SITE_REGISTRY_FILENAME}",
        "logging:",
        "  level: INFO",
        "  format: text",
    ]
    return "\n".join(lines) + "\n"
