-- sql/70_segments.sql for DuckDB: each segment a table. Not reproduced: tessera records who
-- entered and who left each segment (WITH (segment = true) -> tessera.segment_changes).

CREATE OR REPLACE TABLE segment_high_value AS
SELECT unified_id, revenue, orders, last_order_at
  FROM profiles
 WHERE m_score = 5 AND orders >= 2 AND last_order_at >= as_of - INTERVAL '365 days';

CREATE OR REPLACE TABLE segment_at_risk AS
SELECT unified_id, orders, revenue, last_order_at
  FROM profiles
 WHERE orders >= 4 AND last_order_at < as_of - INTERVAL '180 days';

CREATE OR REPLACE TABLE segment_cart_abandoners AS
SELECT unified_id, email, last_cart_at, last_order_at
  FROM profiles
 WHERE last_cart_at >= as_of - INTERVAL '30 days'
   AND last_cart_at < as_of - INTERVAL '7 days'
   AND (last_order_at IS NULL OR last_order_at < last_cart_at);

CREATE OR REPLACE TABLE segment_email_reachable AS
SELECT unified_id, email
  FROM profiles
 WHERE email IS NOT NULL
   AND consent_email_marketing
   AND (unsubscribed_at IS NULL OR unsubscribed_at < consent_email_marketing_at)
   AND email_bounces < 2;

CREATE OR REPLACE TABLE segment_engaged_anonymous AS
SELECT unified_id, web_sessions, page_views, last_session_at, anonymous_ids
  FROM profiles
 WHERE NOT known AND web_sessions >= 3 AND last_session_at >= as_of - INTERVAL '30 days';
