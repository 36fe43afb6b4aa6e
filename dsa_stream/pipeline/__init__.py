"""The pipeline layer: the stage protocol around the stage packages.

It wraps stage functions with the job store (claims, leases, commits), existence
and completeness checks, and provenance. Stage packages never import it.
"""
