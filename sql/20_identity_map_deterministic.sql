-- The identity map from deterministic matching alone (shared normalised identifiers),
-- kept to compare with the map that adds probabilistic matches (40_identity_map.sql).
-- A materialised view: refreshed (resolved again, keeping every known person's id) when
-- `identifiers` changes, and not otherwise.
CREATE MATERIALIZED VIEW IF NOT EXISTS identity_map_deterministic AS
SELECT source, record_key, unified_id FROM resolve_identities('identifiers');
REFRESH MATERIALIZED VIEW identity_map_deterministic;
