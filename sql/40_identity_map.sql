-- The identity map: one row per source record with its unified (person) id, from the
-- deterministic edges plus the probabilistic matches (fuzzy_edges).
-- resolve_identities keeps every known person's id from run to run (the older id
-- survives a merge, see tessera.identity_merges) and refuses links that would give a
-- profile more than 1 customer id, 5 emails, 3 phones or 50 anonymous ids (see
-- tessera.identity_refusals). Refilled each time the model is applied; views built on
-- it stay in place.
CREATE OR REPLACE VIEW identity_edges_all AS
SELECT source, record_key, id_type, id_value FROM identifiers
UNION ALL
SELECT source, record_key, id_type, id_value FROM fuzzy_edges;

CREATE TABLE IF NOT EXISTS identity_map (
  source TEXT NOT NULL,
  record_key TEXT NOT NULL,
  unified_id TEXT NOT NULL
);
TRUNCATE identity_map;
INSERT INTO identity_map
SELECT source, record_key, unified_id FROM resolve_identities('identity_edges_all');
