"""Graph stores: the ``GraphStore`` protocol and one module per backend (embedded SQLite, Neo4j)."""
