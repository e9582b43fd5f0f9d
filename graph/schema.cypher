// kgmm's constraints and indexes for Neo4j 5 (idempotent). kgmm runs these itself on first use;
// a user who may not change the schema needs an administrator to run them once:
//   cypher-shell -u neo4j -p "$NEO4J_PASSWORD" -d neo4j -f graph/schema.cypher
// (with graph/docker-compose.yml: docker compose -f graph/docker-compose.yml exec neo4j
//   sh -c 'cypher-shell -u neo4j -p "$KGMM_HEALTH_PASSWORD" -f /kgmm/schema.cypher')
CREATE CONSTRAINT kgmm_entity_id IF NOT EXISTS FOR (e:Entity) REQUIRE e.id IS UNIQUE;
CREATE CONSTRAINT kgmm_source_id IF NOT EXISTS FOR (s:Source) REQUIRE s.id IS UNIQUE;
CREATE INDEX kgmm_entity_name_key IF NOT EXISTS FOR (e:Entity) ON (e.name_key);
CREATE INDEX kgmm_entity_type IF NOT EXISTS FOR (e:Entity) ON (e.type);
