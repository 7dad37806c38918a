-- Segments: who is in an audience, one row per member (unified_id). Each is a
-- materialised view created WITH (segment = true), so every refresh records who entered
-- and who left in tessera.segment_changes, for other systems to act on.
-- Times are relative to the model's clock (profiles.as_of: the latest event seen).

-- High value: the top fifth of buyers by revenue who bought again within the last year.
CREATE MATERIALIZED VIEW IF NOT EXISTS segment_high_value WITH (segment = true) AS
SELECT unified_id, revenue, orders, last_order_at
  FROM profiles
 WHERE m_score = 5 AND orders >= 2 AND last_order_at >= as_of - INTERVAL '365 days';
REFRESH MATERIALIZED VIEW segment_high_value;

-- At risk: frequent buyers (four orders or more) with no order in the last 180 days.
CREATE MATERIALIZED VIEW IF NOT EXISTS segment_at_risk WITH (segment = true) AS
SELECT unified_id, orders, revenue, last_order_at
  FROM profiles
 WHERE orders >= 4 AND last_order_at < as_of - INTERVAL '180 days';
REFRESH MATERIALIZED VIEW segment_at_risk;

-- Cart abandoners: added to the cart in the last 30 days and ordered nothing in the
-- 7 days after (people whose last cart add is under 7 days old are still deciding).
CREATE MATERIALIZED VIEW IF NOT EXISTS segment_cart_abandoners WITH (segment = true) AS
SELECT unified_id, email, last_cart_at, last_order_at
  FROM profiles
 WHERE last_cart_at >= as_of - INTERVAL '30 days'
   AND last_cart_at < as_of - INTERVAL '7 days'
   AND (last_order_at IS NULL OR last_order_at < last_cart_at);
REFRESH MATERIALIZED VIEW segment_cart_abandoners;

-- Email-reachable: an address, consent to email marketing, no unsubscribe since that
-- consent was given, and fewer than two bounces.
CREATE MATERIALIZED VIEW IF NOT EXISTS segment_email_reachable WITH (segment = true) AS
SELECT unified_id, email
  FROM profiles
 WHERE email IS NOT NULL
   AND consent_email_marketing
   AND (unsubscribed_at IS NULL OR unsubscribed_at < consent_email_marketing_at)
   AND email_bounces < 2;
REFRESH MATERIALIZED VIEW segment_email_reachable;

-- Engaged anonymous visitors: never identified (no customer id, no email), at least
-- three web sessions, one of them in the last 30 days.
CREATE MATERIALIZED VIEW IF NOT EXISTS segment_engaged_anonymous WITH (segment = true) AS
SELECT unified_id, web_sessions, page_views, last_session_at, anonymous_ids
  FROM profiles
 WHERE NOT known AND web_sessions >= 3 AND last_session_at >= as_of - INTERVAL '30 days';
REFRESH MATERIALIZED VIEW segment_engaged_anonymous;
