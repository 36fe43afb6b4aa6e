"""Provenance of a product: what it was made from, down to the subband files.

``product_lineage`` links a child product to its parents (mosaic -> images,
image -> MS and calibration tables, calibration tables -> the calibrator's MS); an MS
leads to the subband files of its group (``input_files``).
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import Connection, select

from dsa_stream.exceptions import RegistryError
from dsa_stream.registry.models import groups, input_files, product_lineage, products

_REF_RE = re.compile(r"^(?P<key>.+?)(?::v(?P<version>\d+))?$")


def find_product_ref(conn: Connection, ref: str) -> Any:
    """A product by reference.

    ``ref`` is an id (``17``), a logical key (``image:<group>``: the newest version), a
    logical key and version (``mosaic:<window>:v2``) or a staged or published path.
    """
    if ref.isdigit():
        row = conn.execute(select(products).where(products.c.id == int(ref))).first()
    else:
        m = _REF_RE.match(ref)
        assert m is not None
        q = select(products).where(products.c.logical_key == m["key"])
        if m["version"]:
            q = q.where(products.c.version == int(m["version"]))
        row = conn.execute(q.order_by(products.c.version.desc()).limit(1)).first()
        if row is None:
            row = conn.execute(
                select(products)
                .where(
                    (products.c.rel_path == ref.rstrip("/"))
                    | (products.c.published_rel_path == ref.rstrip("/"))
                )
                .limit(1)
            ).first()
    if row is None:
        raise RegistryError(f"no product {ref!r} (an id, a logical key[:vN] or a product path)")
    return row


def _node(row: Any, relation: str | None) -> dict[str, Any]:
    return {
        "id": row.id,
        "kind": row.kind,
        "logical_key": row.logical_key,
        "version": row.version,
        "state": row.state,
        "qa_status": row.qa_status,
        "validation_status": row.validation_status,
        "path": f"{row.root_id}:{row.rel_path}",
        "published": f"{row.published_root_id}:{row.published_rel_path}"
        if row.published_rel_path
        else None,
        "relation": relation,
        "obs_start": row.obs_start.isoformat(),
        "parents": [],
    }


def _files(conn: Connection, group_id: int) -> list[dict[str, Any]]:
    key = conn.execute(select(groups.c.group_key).where(groups.c.id == group_id)).scalar()
    rows = conn.execute(
        select(input_files)
        .where(
            input_files.c.group_id == group_id, input_files.c.state.in_(["registered", "consumed"])
        )
        .order_by(input_files.c.subband)
    ).all()
    return [
        {
            "group_key": key,
            "subband": r.subband,
            "path": f"{r.root_id}:{r.rel_path}",
            "size": r.size,
            "checksum": r.checksum,
            "state": r.state,
        }
        for r in rows
    ]


def lineage(conn: Connection, product_id: int, *, max_depth: int = 8) -> dict[str, Any]:
    """The provenance tree of a product (parents recursively; files under each MS)."""

    def walk(row: Any, relation: str | None, depth: int, seen: frozenset[int]) -> dict[str, Any]:
        node = _node(row, relation)
        if row.kind == "ms" and row.group_id is not None:
            node["files"] = _files(conn, row.group_id)
        if depth >= max_depth:
            return node
        edges = conn.execute(
            select(product_lineage.c.parent_id, product_lineage.c.relation)
            .where(product_lineage.c.child_id == row.id)
            .order_by(product_lineage.c.parent_id)
        ).all()
        for edge in edges:
            if edge.parent_id in seen:
                continue
            parent = conn.execute(select(products).where(products.c.id == edge.parent_id)).one()
            node["parents"].append(walk(parent, edge.relation, depth + 1, seen | {row.id}))
        return node

    root = conn.execute(select(products).where(products.c.id == product_id)).first()
    if root is None:
        raise RegistryError(f"no product with id {product_id}")
    tree = walk(root, None, 0, frozenset())
    children = conn.execute(
        select(products.c.id, products.c.kind, products.c.logical_key, products.c.version)
        .join(product_lineage, product_lineage.c.child_id == products.c.id)
        .where(product_lineage.c.parent_id == product_id)
        .order_by(products.c.id)
    ).all()
    tree["used_by"] = [
        {"id": c.id, "kind": c.kind, "logical_key": c.logical_key, "version": c.version}
        for c in children
    ]
    return tree
