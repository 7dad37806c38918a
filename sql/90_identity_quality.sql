-- How well the identity map matches the demo's ground truth (record -> person), as
-- pairwise precision, recall and F1 over pairs of records placed in one profile, and
-- the largest profile. Two scopes: every record, and customer records only (CRM,
-- orders, tickets, consent changes; web events and email engagement rows are many
-- per person and dominate the pair counts).
CREATE OR REPLACE VIEW identity_quality AS
WITH j AS (
  SELECT m.unified_id, g.person_id,
         CASE WHEN m.source IN ('web_events', 'email_engagement') THEN 'behavioural' ELSE 'customer' END AS kind
    FROM identity_map m
    JOIN ground_truth g ON g.source = m.source AND g.record_key = m.record_key
),
scoped AS (
  SELECT 'all records' AS scope, unified_id, person_id FROM j
  UNION ALL
  SELECT 'customer records', unified_id, person_id FROM j WHERE kind = 'customer'
),
by_profile AS (
  SELECT scope, unified_id, CAST(count(*) AS DOUBLE) AS n FROM scoped GROUP BY scope, unified_id
),
by_person AS (
  SELECT scope, person_id, CAST(count(*) AS DOUBLE) AS n FROM scoped GROUP BY scope, person_id
),
by_both AS (
  SELECT scope, CAST(count(*) AS DOUBLE) AS n FROM scoped GROUP BY scope, unified_id, person_id
),
counts AS (
  SELECT p.scope,
         p.predicted, a.actual, b.correct, p.largest, p.profiles, a.persons
    FROM (SELECT scope, sum(n * (n - 1) / 2) AS predicted, max(n) AS largest, count(*) AS profiles
            FROM by_profile GROUP BY scope) p
    JOIN (SELECT scope, sum(n * (n - 1) / 2) AS actual, count(*) AS persons
            FROM by_person GROUP BY scope) a ON a.scope = p.scope
    JOIN (SELECT scope, sum(n * (n - 1) / 2) AS correct FROM by_both GROUP BY scope) b
      ON b.scope = p.scope
)
SELECT scope,
       round(correct / nullif(predicted, 0), 4) AS precision,
       round(correct / nullif(actual, 0), 4) AS recall,
       round(2 * correct / nullif(predicted + actual, 0), 4) AS f1,
       CAST(largest AS BIGINT) AS largest_profile,
       profiles,
       persons
  FROM counts
 ORDER BY scope;
