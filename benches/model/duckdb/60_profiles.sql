-- sql/60_profiles.sql for DuckDB: each materialised view a table (CREATE OR REPLACE
-- TABLE), the SQL otherwise unchanged but for all_emails (below). latest, first_by_priority,
-- collect_distinct and most_frequent are the macros of 00_setup.sql.

CREATE OR REPLACE TABLE consent_state AS
SELECT unified_id,
       purpose,
       NOT latest(NOT granted, changed_at) AS granted,
       max(changed_at) AS changed_at
  FROM stg_consent_changes
 WHERE purpose IS NOT NULL AND granted IS NOT NULL AND changed_at IS NOT NULL
 GROUP BY unified_id, purpose;

CREATE OR REPLACE TABLE web_sessions AS
SELECT unified_id,
       anonymous_id,
       min(occurred_at) AS started_at,
       max(occurred_at) AS ended_at,
       count(*) AS events,
       min(device) AS device
  FROM (SELECT unified_id, anonymous_id, occurred_at, device,
               sum(CASE WHEN gap IS NULL OR gap > INTERVAL '30 minutes' THEN 1 ELSE 0 END)
                 OVER (PARTITION BY anonymous_id ORDER BY occurred_at
                       ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS session_no
          FROM (SELECT unified_id, anonymous_id, occurred_at, device,
                       occurred_at - lag(occurred_at) OVER (PARTITION BY anonymous_id ORDER BY occurred_at) AS gap
                  FROM stg_web_events
                 WHERE anonymous_id IS NOT NULL AND occurred_at IS NOT NULL) e) s
 GROUP BY unified_id, anonymous_id, session_no;

CREATE OR REPLACE TABLE web_activity AS
SELECT unified_id,
       count(*) FILTER (WHERE event_type IN ('page_view', 'product_view')) AS page_views,
       count(*) FILTER (WHERE event_type = 'add_to_cart') AS cart_adds,
       max(occurred_at) FILTER (WHERE event_type = 'add_to_cart') AS last_cart_at,
       collect_distinct(anonymous_id) AS anonymous_ids,
       collect_distinct(device) AS devices,
       first_by_priority(email, 3, occurred_at) AS email,
       collect_distinct(email) AS emails,
       min(occurred_at) AS first_seen,
       max(occurred_at) AS last_seen
  FROM stg_web_events GROUP BY unified_id;

CREATE OR REPLACE TABLE email_activity AS
SELECT unified_id,
       count(*) FILTER (WHERE event = 'sent') AS emails_sent,
       count(*) FILTER (WHERE event = 'open') AS email_opens,
       count(*) FILTER (WHERE event = 'click') AS email_clicks,
       count(*) FILTER (WHERE event = 'bounce') AS email_bounces,
       max(occurred_at) FILTER (WHERE event = 'open') AS last_email_open_at,
       max(occurred_at) FILTER (WHERE event = 'click') AS last_email_click_at,
       max(occurred_at) FILTER (WHERE event = 'unsubscribe') AS unsubscribed_at,
       first_by_priority(email, 4, occurred_at) AS email,
       collect_distinct(email) AS emails,
       min(occurred_at) AS first_seen,
       max(occurred_at) AS last_seen
  FROM stg_email_events GROUP BY unified_id;

CREATE OR REPLACE TABLE profile_facts AS
WITH
crm AS (
  SELECT unified_id,
         latest(contact_id, updated_at) AS customer_id,
         latest(first_name, updated_at) AS first_name,
         latest(last_name, updated_at) AS last_name,
         first_by_priority(nullif(trim(concat_ws(' ', first_name, last_name)), ''), 1, updated_at) AS full_name,
         first_by_priority(email, 1, updated_at) AS email,
         collect_distinct(email) AS emails,
         first_by_priority(phone, 1, updated_at) AS phone,
         collect_distinct(phone) AS phones,
         latest(street, updated_at) AS street,
         latest(city, updated_at) AS city,
         latest(postcode, updated_at) AS postcode,
         latest(country, updated_at) AS country,
         most_frequent(birth_date) AS birth_date,
         min(created_at) AS first_seen,
         max(updated_at) AS last_seen
    FROM stg_contacts GROUP BY unified_id
),
orders AS (
  SELECT unified_id,
         count(*) FILTER (WHERE status = 'paid') AS orders,
         count(*) FILTER (WHERE status = 'paid' AND channel = 'web') AS web_orders,
         count(*) FILTER (WHERE status = 'paid' AND channel = 'store') AS store_orders,
         count(*) FILTER (WHERE status = 'refunded') AS refunded_orders,
         sum(total_eur) FILTER (WHERE status = 'paid') AS revenue,
         min(ordered_at) FILTER (WHERE status = 'paid') AS first_order_at,
         max(ordered_at) FILTER (WHERE status = 'paid') AS last_order_at,
         first_by_priority(name, 1, ordered_at) AS name,
         first_by_priority(email, 1, ordered_at) AS email,
         collect_distinct(email) AS emails,
         first_by_priority(phone, 1, ordered_at) AS phone,
         collect_distinct(phone) AS phones,
         min(ordered_at) AS first_seen,
         max(ordered_at) AS last_seen
    FROM stg_orders GROUP BY unified_id
),
sessions AS (
  SELECT unified_id, count(*) AS web_sessions, max(started_at) AS last_session_at
    FROM web_sessions GROUP BY unified_id
),
support AS (
  SELECT unified_id,
         count(*) AS support_tickets,
         count(*) FILTER (WHERE status IN ('open', 'pending')) AS open_tickets,
         max(opened_at) AS last_ticket_at,
         first_by_priority(name, 1, opened_at) AS name,
         first_by_priority(phone, 1, opened_at) AS phone,
         collect_distinct(phone) AS phones,
         min(opened_at) AS first_seen,
         max(opened_at) AS last_seen
    FROM stg_support_tickets GROUP BY unified_id
),
consent AS (
  SELECT unified_id,
         bool_or(granted) FILTER (WHERE purpose = 'email_marketing') AS consent_email_marketing,
         bool_or(granted) FILTER (WHERE purpose = 'sms_marketing') AS consent_sms_marketing,
         bool_or(granted) FILTER (WHERE purpose = 'analytics') AS consent_analytics,
         bool_or(granted) FILTER (WHERE purpose = 'personalization') AS consent_personalization,
         max(changed_at) FILTER (WHERE purpose = 'email_marketing') AS consent_email_marketing_at,
         min(changed_at) AS first_seen,
         max(changed_at) AS last_seen
    FROM consent_state GROUP BY unified_id
),
people AS (
  SELECT DISTINCT unified_id FROM identity_map
)
SELECT p.unified_id,
       crm.customer_id,
       coalesce(crm.full_name, o.name, s.name, concat_ws(' ', crm.first_name, crm.last_name)) AS full_name,
       crm.first_name,
       crm.last_name,
       coalesce(crm.email, o.email, w.email, m.email) AS email,
       coalesce(crm.phone, o.phone, s.phone) AS phone,
       crm.street,
       crm.city,
       crm.postcode,
       crm.country,
       crm.birth_date,
       -- DuckDB's list_concat gives [] where DataFusion's array_concat gives NULL.
       CASE WHEN crm.emails IS NOT NULL OR o.emails IS NOT NULL OR w.emails IS NOT NULL OR m.emails IS NOT NULL
            THEN list_sort(list_distinct(list_concat(crm.emails, o.emails, w.emails, m.emails))) END AS all_emails,
       CASE WHEN crm.phones IS NOT NULL OR o.phones IS NOT NULL OR s.phones IS NOT NULL
            THEN list_sort(list_distinct(list_concat(crm.phones, o.phones, s.phones))) END AS all_phones,
       least(crm.first_seen, o.first_seen, w.first_seen, m.first_seen, s.first_seen, c.first_seen) AS first_seen,
       greatest(crm.last_seen, o.last_seen, w.last_seen, m.last_seen, s.last_seen, c.last_seen) AS last_seen,
       coalesce(o.orders, 0) AS orders,
       coalesce(o.web_orders, 0) AS web_orders,
       coalesce(o.store_orders, 0) AS store_orders,
       coalesce(o.refunded_orders, 0) AS refunded_orders,
       round(coalesce(o.revenue, 0), 2) AS revenue,
       round(o.revenue / nullif(o.orders, 0), 2) AS avg_order_value,
       o.first_order_at,
       o.last_order_at,
       coalesce(m.emails_sent, 0) AS emails_sent,
       coalesce(m.email_opens, 0) AS email_opens,
       coalesce(m.email_clicks, 0) AS email_clicks,
       coalesce(m.email_bounces, 0) AS email_bounces,
       m.last_email_open_at,
       m.last_email_click_at,
       m.unsubscribed_at,
       coalesce(s.support_tickets, 0) AS support_tickets,
       coalesce(s.open_tickets, 0) AS open_tickets,
       s.last_ticket_at,
       coalesce(w.page_views, 0) AS page_views,
       coalesce(w.cart_adds, 0) AS cart_adds,
       w.last_cart_at,
       coalesce(ws.web_sessions, 0) AS web_sessions,
       ws.last_session_at,
       w.anonymous_ids,
       w.devices,
       c.consent_email_marketing,
       c.consent_email_marketing_at,
       c.consent_sms_marketing,
       c.consent_analytics,
       c.consent_personalization
  FROM consent c RIGHT JOIN (
       support s RIGHT JOIN (
       email_activity m RIGHT JOIN (
       sessions ws RIGHT JOIN (
       web_activity w RIGHT JOIN (
       orders o RIGHT JOIN (
       crm RIGHT JOIN people p
         ON crm.unified_id = p.unified_id)
         ON o.unified_id = p.unified_id)
         ON w.unified_id = p.unified_id)
         ON ws.unified_id = p.unified_id)
         ON m.unified_id = p.unified_id)
         ON s.unified_id = p.unified_id)
         ON c.unified_id = p.unified_id;

CREATE OR REPLACE TABLE profiles AS
WITH scores AS (
  SELECT unified_id,
         CASE WHEN orders > 0 THEN CAST(6 - ntile(5) OVER (PARTITION BY orders > 0 ORDER BY last_order_at DESC, unified_id) AS INT) END AS r_score,
         CASE WHEN orders > 0 THEN CAST(ntile(5) OVER (PARTITION BY orders > 0 ORDER BY orders, unified_id) AS INT) END AS f_score,
         CASE WHEN orders > 0 THEN CAST(ntile(5) OVER (PARTITION BY orders > 0 ORDER BY revenue, unified_id) AS INT) END AS m_score
    FROM profile_facts
),
clock AS (SELECT max(last_seen) AS as_of FROM profile_facts)
SELECT f.*,
       CAST(date_part('day', clock.as_of - f.last_order_at) AS BIGINT) AS recency_days,
       s.r_score,
       s.f_score,
       s.m_score,
       f.customer_id IS NOT NULL OR f.email IS NOT NULL AS known,
       clock.as_of
  FROM clock
 CROSS JOIN scores s
  JOIN profile_facts f ON f.unified_id = s.unified_id
 ORDER BY f.unified_id;

CREATE OR REPLACE TABLE identity_lookup AS
SELECT DISTINCT e.id_type, e.id_value, m.unified_id
  FROM identifiers e
  JOIN identity_map m ON m.source = e.source AND m.record_key = e.record_key
 WHERE e.id_value IS NOT NULL
 ORDER BY e.id_type, e.id_value, m.unified_id;
