"""Atomic publication: same filesystem, across filesystems, and crashes at every step."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dsa_stream.exceptions import ProductError
from dsa_stream.products import fsops, publish
from dsa_stream.products.manifest import build_manifest, verify_manifest

CRASH_POINTS = (
    "publish:after_write",
    "publish:after_fsync",
    "publish:after_rename",
    "publish:after_cleanup",
)


def make_tree(root: Path) -> Path:
    ms = root / "2025-10-02T00:00:00.ms"
    (ms / "ANTENNA").mkdir(parents=True)
    (ms / "table.dat").write_bytes(b"main" * 1000)
    (ms / "table.f0").write_bytes(os.urandom(200_000))
    (ms / "ANTENNA" / "table.dat").write_bytes(b"ant")
    return ms


def other_filesystem(tmp_path: Path) -> Path | None:
    shm = Path("/dev/shm")
    if shm.is_dir() and os.stat(shm).st_dev != os.stat(tmp_path).st_dev:
        d = shm / f"dsa-stream-test-{os.getpid()}-{tmp_path.name}"
        d.mkdir(parents=True, exist_ok=True)
        return d
    return None


@pytest.fixture
def cross_fs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A destination on another filesystem (/dev/shm), or the copy path forced."""
    other = other_filesystem(tmp_path)
    if other is None:  # fault injection: take the cross-filesystem path on one filesystem
        monkeypatch.setattr(publish, "same_filesystem", lambda a, b: False)
        other = tmp_path / "other"
        other.mkdir()
    yield other
    fsops.ensure_absent(other)


def test_manifest_detects_every_change(tmp_path: Path) -> None:
    ms = make_tree(tmp_path)
    m = build_manifest(ms)
    assert set(m.files) == {"table.dat", "table.f0", "ANTENNA/table.dat"}
    assert verify_manifest(ms, m) == []
    (ms / "ANTENNA" / "table.dat").write_bytes(b"ANT")
    (ms / "extra").write_bytes(b"")
    problems = verify_manifest(ms, m)
    assert any("ANTENNA/table.dat" in p for p in problems) and any("extra" in p for p in problems)
    assert m.digest() != build_manifest(ms).digest()
    f = tmp_path / "img.fits"
    f.write_bytes(b"x" * 10)
    fm = build_manifest(f)
    g = tmp_path / "renamed.fits"
    g.write_bytes(b"x" * 10)
    assert verify_manifest(g, fm) == []  # single files compare by content


def test_same_filesystem_publish_is_a_rename_and_idempotent(tmp_path: Path) -> None:
    src = make_tree(tmp_path / "staging")
    m = build_manifest(src)
    ino = os.stat(src / "table.f0").st_ino
    res = publish.publish_product(src, tmp_path / "products" / "ms", src.name, m, token="j1-1")
    assert res.method == "rename" and not src.exists()
    assert os.stat(res.path / "table.f0").st_ino == ino  # moved, not copied
    again = publish.publish_product(src, tmp_path / "products" / "ms", src.name, m, token="j1-2")
    assert again.method == "already-published" and again.path == res.path


def test_cross_filesystem_publish_copies_verifies_and_keeps_source(
    tmp_path: Path, cross_fs: Path
) -> None:
    src = make_tree(tmp_path / "staging")
    m = build_manifest(src)
    res = publish.publish_product(src, cross_fs / "ms", src.name, m, token="j2-1")
    assert res.method == "copy" and src.exists()
    assert verify_manifest(res.path, m) == []
    assert list((cross_fs / "ms" / publish.INCOMING_DIR).iterdir()) == []
    assert publish.remove_source(src) is True and not src.exists()
    assert publish.remove_source(src) is False  # idempotent


def test_corrupt_copy_is_detected_and_removed(
    tmp_path: Path, cross_fs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = make_tree(tmp_path / "staging")
    m = build_manifest(src)

    def bad_copy(a: Path, b: Path) -> None:
        fsops.copy_product(a, b)
        (b / "table.f0").write_bytes(b"bitrot")

    monkeypatch.setattr(publish, "copy_product", bad_copy)
    with pytest.raises(ProductError, match="corrupt"):
        publish.publish_product(src, cross_fs / "ms", src.name, m, token="j3-1")
    assert not (cross_fs / "ms" / src.name).exists()
    assert list((cross_fs / "ms" / publish.INCOMING_DIR).iterdir()) == []


def test_conflicting_destination_is_never_overwritten(tmp_path: Path) -> None:
    src = make_tree(tmp_path / "staging")
    m = build_manifest(src)
    dest_dir = tmp_path / "products"
    other = make_tree(dest_dir)
    (other / "table.dat").write_bytes(b"different")
    with pytest.raises(ProductError, match="different content"):
        publish.publish_product(src, dest_dir, src.name, m, token="j4-1")
    assert src.exists() and (other / "table.dat").read_bytes() == b"different"


def test_staged_product_must_match_its_manifest(tmp_path: Path) -> None:
    src = make_tree(tmp_path / "staging")
    m = build_manifest(src)
    (src / "table.f0").write_bytes(b"truncated")
    with pytest.raises(ProductError, match="does not match its manifest"):
        publish.publish_product(src, tmp_path / "p", src.name, m, token="j5-1")


def test_bad_tokens_and_names_are_refused(tmp_path: Path) -> None:
    src = make_tree(tmp_path / "s")
    m = build_manifest(src)
    for name, token in (("a/b", "t"), ("..", "t"), ("x", "a.b"), ("x", "")):
        with pytest.raises(ProductError, match="invalid"):
            publish.publish_product(src, tmp_path / "p", name, m, token=token)


def test_stale_partials(tmp_path: Path) -> None:
    incoming = tmp_path / publish.INCOMING_DIR
    incoming.mkdir()
    for n in ("a.ms.j1-1.partial", "b.ms.j2-1.partial", "junk"):
        (incoming / n).mkdir()
    stale = publish.stale_partials(tmp_path, {"j2-1"})
    assert [p.name for p in stale] == ["a.ms.j1-1.partial", "junk"]


def test_ensure_absent_is_idempotent(tmp_path: Path) -> None:
    tree = make_tree(tmp_path)
    assert fsops.ensure_absent(tree) is True
    assert fsops.ensure_absent(tree) is False
    f = tmp_path / "f"
    f.write_text("x")
    assert fsops.ensure_absent(f) is True and fsops.ensure_absent(f) is False


_CHILD = r"""
import sys
from pathlib import Path
from dsa_stream.products import publish
from dsa_stream.products.manifest import Manifest
src, dest_dir, manifest, token, force_copy = sys.argv[1:6]
if force_copy == "1":
    publish.same_filesystem = lambda a, b: False
m = Manifest.model_validate_json(Path(manifest).read_text())
res = publish.publish_product(Path(src), Path(dest_dir), Path(src).name, m, token=token)
publish.remove_source(Path(src))
print(res.method)
"""


@pytest.mark.parametrize("cross", [False, True], ids=["rename", "copy"])
@pytest.mark.parametrize("point", CRASH_POINTS)
def test_crash_at_every_point_then_rerun_gives_exactly_one_copy(
    tmp_path: Path, point: str, cross: bool
) -> None:
    src = make_tree(tmp_path / "staging")
    m = build_manifest(src)
    mfile = tmp_path / "manifest.json"
    mfile.write_text(m.model_dump_json())
    dest_dir = tmp_path / "products"
    args = [
        sys.executable,
        "-c",
        _CHILD,
        str(src),
        str(dest_dir),
        str(mfile),
        "j9-1",
        "1" if cross else "0",
    ]
    env = {**os.environ, fsops.CRASH_ENV: point}
    crashed = subprocess.run(args, env=env, capture_output=True, text=True, timeout=60)
    reached = point != "publish:after_write" or cross  # rename publishing writes no copy
    assert crashed.returncode == (137 if reached else 0), crashed.stderr
    # Restart: the same step runs again (a new attempt token) and must converge.
    env.pop(fsops.CRASH_ENV)
    args[6] = "j9-2"
    rerun = subprocess.run(args, env=env, capture_output=True, text=True, timeout=60)
    assert rerun.returncode == 0, rerun.stderr
    published = dest_dir / src.name
    assert verify_manifest(published, m) == []
    assert not src.exists()
    stale = publish.stale_partials(dest_dir, active_tokens=set())
    for leftover in stale:  # the reconciler's job: partials of dead attempts
        fsops.ensure_absent(leftover)
    copies = [p for p in dest_dir.rglob("table.f0")]
    assert copies == [published / "table.f0"], copies
