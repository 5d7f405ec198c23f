"""Pure core of the lineage tracker: events, identifiers, purposes, policy, projection, propagation.

Nothing in this package performs I/O or imports a driver (Kafka, Neo4j, faust); adapters live in
``graph/``, ``streams/`` and ``cli/`` and talk to the core through :mod:`lineage.ports`.
"""
