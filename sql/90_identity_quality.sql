-- How well the identity maps match the demo's ground truth (record -> person), as
-- pairwise precision, recall and F1 over pairs of records placed in one profile, and
-- the largest profile; for deterministic matching alone and with the probabilistic
-- matches added. Two scopes: every record, and customer records only (CRM, orders,
-- tickets, consent changes; web events and email engagement rows are many per person
-- and dominate the pair counts).
CREATE OR REPLACE VIEW identity_quality AS
WITH maps AS (
  SELECT 'deterministic' AS method, source, record_key, unified_id FROM identity_map_deterministic
  UNION ALL
  SELECT 'deterministic + probabilistic', source, record_key, unified_id FROM identity_map
),
j AS (
  SELECT m.method, m.unified_id, g.person_id,
         CASE WHEN m.source IN ('web_events', 'email_engagement') THEN 'behavioural' ELSE 'customer' END AS kind
    FROM maps m
    JOIN ground_truth g ON g.source = m.source AND g.record_key = m.record_key
),
scoped AS (
  SELECT method, 'all records' AS scope, unified_id, person_id FROM j
  UNION ALL
  SELECT method, 'customer records', unified_id, person_id FROM j WHERE kind = 'customer'
),
by_profile AS (
  SELECT method, scope, unified_id, CAST(count(*) AS DOUBLE) AS n
    FROM scoped GROUP BY method, scope, unified_id
),
by_person AS (
  SELECT method, scope, person_id, CAST(count(*) AS DOUBLE) AS n
    FROM scoped GROUP BY method, scope, person_id
),
by_both AS (
  SELECT method, scope, CAST(count(*) AS DOUBLE) AS n
    FROM scoped GROUP BY method, scope, unified_id, person_id
),
counts AS (
  SELECT p.method, p.scope, p.predicted, a.actual, b.correct, p.largest, p.profiles, a.persons
    FROM (SELECT method, scope, sum(n * (n - 1) / 2) AS predicted, max(n) AS largest,
                 count(*) AS profiles
            FROM by_profile GROUP BY method, scope) p
    JOIN (SELECT method, scope, sum(n * (n - 1) / 2) AS actual, count(*) AS persons
            FROM by_person GROUP BY method, scope) a
      ON a.method = p.method AND a.scope = p.scope
    JOIN (SELECT method, scope, sum(n * (n - 1) / 2) AS correct
            FROM by_both GROUP BY method, scope) b
      ON b.method = p.method AND b.scope = p.scope
)
SELECT method, scope,
       round(correct / nullif(predicted, 0), 4) AS precision,
       round(correct / nullif(actual, 0), 4) AS recall,
       round(2 * correct / nullif(predicted + actual, 0), 4) AS f1,
       CAST(largest AS BIGINT) AS largest_profile,
       profiles,
       persons
  FROM counts
 ORDER BY method, scope;
