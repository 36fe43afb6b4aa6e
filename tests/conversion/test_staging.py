"""Crash safety: killed conversions leave nothing adoptable; valid outputs are adopted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from casacore import tables

from dsa_stream.conversion import convert_group
from dsa_stream.conversion.staging import MANIFEST_NAME, read_manifest, stale_partials
from dsa_stream.exceptions import ConversionError

from .conftest import fast_options

KILLER = textwrap.dedent(
    """
    import os, signal, sys, json
    import dsa_stream.casa_env
    from dsa_stream.conversion import convert_group
    from dsa_stream.conversion.options import ConvertOptions
    files, out, opts = json.loads(sys.argv[1])

    def progress(step, done, total):
        if step == "writing" and 0 < done < total:
            os.kill(os.getpid(), signal.SIGKILL)  # crash in the middle of the main table

    convert_group(files, out, ConvertOptions.model_validate(opts), progress=progress)
    """
)


def _kill_mid_write(files: list[Path], out: Path) -> None:
    opts = fast_options(rows_per_block=36 * 4).model_dump(mode="json")
    payload = json.dumps([[str(f) for f in files], str(out), opts])
    proc = subprocess.run([sys.executable, "-c", KILLER, payload], capture_output=True, timeout=300)
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]


def test_killed_conversion_is_redone(small_group, tmp_path):
    files = small_group[0]
    out = tmp_path / "g.ms"
    _kill_mid_write(files, out)
    assert not out.exists()
    partials = list(tmp_path.glob("g.ms.*.partial"))
    assert len(partials) == 1 and not (partials[0] / MANIFEST_NAME).exists()
    assert stale_partials(out) == partials
    result = convert_group(files, out, fast_options())
    assert not result.adopted
    assert not list(tmp_path.glob("g.ms.*.partial"))  # the dead attempt's partial is gone
    assert read_manifest(out)["n_rows"] == result.n_rows


def test_valid_existing_output_is_adopted_without_rewrite(small_group, tmp_path):
    out = tmp_path / "g.ms"
    first = convert_group(small_group[0], out, fast_options())
    data_files = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in out.glob("table.f*")}
    from dsa_stream.conversion import adopt_existing

    assert adopt_existing(small_group[0], out, fast_options()).adopted
    assert adopt_existing(small_group[0], out, fast_options(mode="fields")) is None
    again = convert_group(small_group[0], out, fast_options())
    assert again.adopted and again.quarantined is None
    assert again.n_rows == first.n_rows and again.meridian_centres == first.meridian_centres
    assert {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in out.glob("table.f*")} == data_files


def test_other_options_quarantine_and_redo(small_group, tmp_path):
    out = tmp_path / "g.ms"
    convert_group(small_group[0], out, fast_options())
    redo = convert_group(small_group[0], out, fast_options(mode="fields"))
    assert not redo.adopted
    assert redo.quarantined is not None and "options-changed" in redo.quarantined.name
    assert redo.quarantined.exists() and redo.mode == "fields"


def test_output_without_manifest_is_not_adopted(small_group, tmp_path):
    out = tmp_path / "g.ms"
    convert_group(small_group[0], out, fast_options())
    (out / MANIFEST_NAME).unlink()  # e.g. written by an older, non crash-safe tool
    redo = convert_group(small_group[0], out, fast_options())
    assert not redo.adopted and "no-manifest" in redo.quarantined.name


def test_corrupted_output_with_manifest_is_not_adopted(small_group, tmp_path):
    out = tmp_path / "g.ms"
    convert_group(small_group[0], out, fast_options())
    with tables.table(str(out), ack=False, readonly=False) as tb:
        tb.putcol("UVW", tb.getcol("UVW") * 2.0)
    redo = convert_group(small_group[0], out, fast_options())
    assert not redo.adopted and "invalid" in redo.quarantined.name


def test_changed_inputs_are_not_adopted(group_copy, tmp_path):
    files = group_copy()
    out = tmp_path / "g.ms"
    convert_group(files, out, fast_options(checksum_inputs=True))
    with open(files[3], "r+b") as fh:  # same size, different bytes
        fh.seek(-8, os.SEEK_END)
        fh.write(b"\x01" * 8)
    redo = convert_group(files, out, fast_options(checksum_inputs=True))
    assert not redo.adopted and "inputs-changed" in redo.quarantined.name


def test_on_existing_fail(small_group, tmp_path):
    out = tmp_path / "g.ms"
    out.mkdir()
    with pytest.raises(ConversionError, match="already exists"):
        convert_group(small_group[0], out, fast_options(on_existing="fail"))


def test_failed_validation_leaves_no_output(small_group, tmp_path, monkeypatch):
    import dsa_stream.conversion.api as api

    def boom(*_a, **_k):
        raise ConversionError("MS check 'injected' failed")

    monkeypatch.setattr(api, "validate_ms", boom)
    out = tmp_path / "g.ms"
    with pytest.raises(ConversionError, match="injected"):
        convert_group(small_group[0], out, fast_options())
    assert not out.exists() and not list(tmp_path.glob("*.partial"))
