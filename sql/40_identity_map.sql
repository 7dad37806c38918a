-- The identity map: one row per source record with its unified (person) id, from the
-- deterministic edges plus the probabilistic matches (fuzzy_edges).
-- resolve_identities keeps every known person's id from run to run (the older id
-- survives a merge, see tessera.identity_merges) and refuses links that would give a
-- profile more than 1 customer id, 5 emails, 3 phones or 50 anonymous ids (see
-- tessera.identity_refusals). A materialised view: refreshed when its edges change (new
-- identifiers, or new probabilistic matches when the model is applied), and not otherwise.
-- (Declared WITH (key = 'record_key') it would write only the records whose id changed,
-- so that the views below could follow them; at 1M customers that comparison costs more
-- than it saves today: see the main README, Benchmarks.)
CREATE OR REPLACE VIEW identity_edges_all AS
SELECT source, record_key, id_type, id_value FROM identifiers
UNION ALL
SELECT source, record_key, id_type, id_value FROM fuzzy_edges;

CREATE MATERIALIZED VIEW IF NOT EXISTS identity_map AS
SELECT source, record_key, unified_id FROM resolve_identities('identity_edges_all');
REFRESH MATERIALIZED VIEW identity_map;
