"""All of kgmm's Cypher, one module per dialect: :mod:`.ladybug` for the embedded store (LadybugDB) and
:mod:`.neo4j` for Neo4j 5 over Bolt.

Values always travel as ``$parameters`` (or, in LadybugDB, an Arrow table a ``LOAD FROM $rows`` reads);
the only text a query builder splices in is a label or relationship type checked by
:func:`kgmm.schema.is_valid_label` and a hop count checked to be a small integer.
"""
