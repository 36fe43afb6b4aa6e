"""Creating and describing a site: its directories and its configuration file."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from dsa_stream import naming
from dsa_stream.config import Settings, load_settings, site_config_yaml
from dsa_stream.exceptions import ConfigError
from dsa_stream.registry.migrate import upgrade_registry

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SiteInitResult:
    """What :func:`init_site` made."""

    root: Path
    config_path: Path
    directories: dict[str, Path]
    created_config: bool
    settings: Settings


def init_site(root: Path, *, force: bool = False) -> SiteInitResult:
    """Create a ready site under ``root``: configuration file, data directories, registry.

    An existing configuration file is kept (and validated) unless ``force``. The
    registry database is created or migrated to the newest schema.
    Running it twice is harmless.

    Raises:
        ConfigError: if an existing configuration file is invalid, or ``root``
            exists and is not a directory.
        RegistryError: if the registry cannot be created or migrated.
    """
    root = root.expanduser().resolve()
    if root.exists() and not root.is_dir():
        raise ConfigError(f"site root {root} exists and is not a directory")
    root.mkdir(parents=True, exist_ok=True)
    config_path = root / naming.SITE_CONFIG_FILENAME
    created = False
    if force or not config_path.exists():
        tmp = config_path.with_name(f".{config_path.name}.tmp")
        tmp.write_text(site_config_yaml())
        tmp.replace(config_path)
        created = True
    settings = load_settings(config_path)
    dirs = settings.paths.site_dirs()
    for path in dirs.values():
        path.mkdir(parents=True, exist_ok=True)
    revision = upgrade_registry(settings)
    logger.info(
        "site ready at %s (config %s, registry at revision %s)",
        root,
        "written" if created else "kept",
        revision,
    )
    return SiteInitResult(root, config_path, dirs, created, settings)
