-- The identity map from deterministic matching alone (shared normalised identifiers),
-- kept to compare with the map that adds probabilistic matches (40_identity_map.sql).
-- A materialised view keyed by record_key: it is refreshed when `identifiers` changes,
-- and a refresh writes only the records whose unified id changed (or that are new).
CREATE MATERIALIZED VIEW IF NOT EXISTS identity_map_deterministic WITH (key = 'record_key') AS
SELECT source, record_key, unified_id FROM resolve_identities('identifiers');
REFRESH MATERIALIZED VIEW identity_map_deterministic;
