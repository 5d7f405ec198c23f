"""Graph stores: the ``GraphStore`` protocol and one module per backend (networkx, Neo4j)."""
