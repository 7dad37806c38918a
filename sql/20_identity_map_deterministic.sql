-- The identity map from deterministic matching alone (shared normalised identifiers),
-- kept to compare with the map that adds probabilistic matches (40_identity_map.sql).
CREATE TABLE IF NOT EXISTS identity_map_deterministic (
  source TEXT NOT NULL,
  record_key TEXT NOT NULL,
  unified_id TEXT NOT NULL
);
TRUNCATE identity_map_deterministic;
INSERT INTO identity_map_deterministic
SELECT source, record_key, unified_id FROM resolve_identities('identifiers');
