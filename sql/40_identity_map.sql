-- The identity map: one row per source record with its unified (person) id, from the
-- deterministic edges plus the probabilistic matches (fuzzy_edges).
-- resolve_identities keeps every known person's id from run to run (the older id
-- survives a merge, see tessera.identity_merges) and refuses links that would give a
-- profile more than 1 customer id, 5 emails, 3 phones or 50 anonymous ids (see
-- tessera.identity_refusals). A materialised view keyed by record_key: refreshed when
-- its edges change (new identifiers, or new probabilistic matches when the model is
-- applied), writing only the records whose unified id changed or that are new, so the
-- profile views built on it recompute only the people those records belong to.
CREATE OR REPLACE VIEW identity_edges_all AS
SELECT source, record_key, id_type, id_value FROM identifiers
UNION ALL
SELECT source, record_key, id_type, id_value FROM fuzzy_edges;

CREATE MATERIALIZED VIEW IF NOT EXISTS identity_map WITH (key = 'record_key') AS
SELECT source, record_key, unified_id FROM resolve_identities('identity_edges_all');
REFRESH MATERIALIZED VIEW identity_map;
