"""Products: manifests, durable file operations and atomic publication.

Registry bookkeeping (register, finalize, publish states, lineage) lives in the
pipeline layer; this package only touches files.
"""
