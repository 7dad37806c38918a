-- sql/50_harmonised.sql for DuckDB: the same views. Left out: stg_web_events' branch over
-- tessera.events (events collected over HTTP; empty in the demo, and no DuckDB
-- counterpart). identity_map is tessera's, loaded before the timed stages.

CREATE OR REPLACE VIEW fx_rates AS
SELECT * FROM (VALUES ('EUR', 1.0), ('USD', 0.92), ('GBP', 1.17), ('CHF', 1.05))
  AS t(currency, to_eur);

CREATE OR REPLACE VIEW stg_contacts AS
SELECT m.unified_id,
       c.contact_id,
       nullif(trim(c.first_name), '') AS first_name,
       nullif(trim(c.last_name), '') AS last_name,
       normalize_email(c.email) AS email,
       normalize_phone(c.phone, trim(c.country)) AS phone,
       nullif(trim(c.street), '') AS street,
       nullif(trim(c.city), '') AS city,
       nullif(trim(CAST(c.postcode AS TEXT)), '') AS postcode,
       nullif(upper(trim(c.country)), '') AS country,
       CAST(nullif(trim(CAST(c.birth_date AS TEXT)), '') AS DATE) AS birth_date,
       CAST(c.created_at AS TIMESTAMP) AS created_at,
       CAST(c.updated_at AS TIMESTAMP) AS updated_at
  FROM identity_map m
  JOIN crm_contacts c ON m.source = 'crm_contacts' AND m.record_key = c.contact_id;

CREATE OR REPLACE VIEW stg_orders AS
SELECT m.unified_id,
       'shop_orders' AS source,
       o.order_id AS order_key,
       'web' AS channel,
       CAST(o.ordered_at AS TIMESTAMP) AS ordered_at,
       o.status,
       o.items,
       o.currency,
       o.total,
       CAST(o.total * coalesce(fx.to_eur, 1.0) AS DECIMAL(18, 2)) AS total_eur,
       normalize_email(o.customer_email) AS email,
       nullif(trim(o.customer_name), '') AS name,
       coalesce(normalize_phone(o.phone), normalize_phone('+' || o.phone)) AS phone
  FROM identity_map m
  JOIN shop_orders o ON m.source = 'shop_orders' AND m.record_key = o.order_id
  LEFT JOIN fx_rates fx ON fx.currency = o.currency
UNION ALL
SELECT m.unified_id,
       'pos_orders' AS source,
       p.receipt_id AS order_key,
       'store' AS channel,
       CAST(p.purchased_at AS TIMESTAMP) AS ordered_at,
       'paid' AS status,
       p.items,
       'EUR' AS currency,
       p.total,
       CAST(p.total AS DECIMAL(18, 2)) AS total_eur,
       CAST(NULL AS TEXT) AS email,
       CAST(NULL AS TEXT) AS name,
       coalesce(normalize_phone(p.phone), normalize_phone('+' || p.phone)) AS phone
  FROM identity_map m
  JOIN pos_orders p ON m.source = 'pos_orders' AND m.record_key = p.receipt_id;

CREATE OR REPLACE VIEW stg_web_events AS
SELECT m.unified_id,
       e.event_id,
       nullif(trim(e.anonymous_id), '') AS anonymous_id,
       nullif(upper(trim(e.user_id)), '') AS customer_id,
       normalize_email(e.email) AS email,
       e.event_type,
       e.url,
       e.device,
       CAST(e.occurred_at AS TIMESTAMP) AS occurred_at
  FROM identity_map m
  JOIN web_events e ON m.source = 'web_events' AND m.record_key = e.event_id;

CREATE OR REPLACE VIEW stg_email_events AS
SELECT m.unified_id,
       s.send_id,
       normalize_email(s.email) AS email,
       s.campaign,
       s.event,
       CAST(s.occurred_at AS TIMESTAMP) AS occurred_at
  FROM identity_map m
  JOIN email_engagement s ON m.source = 'email_engagement' AND m.record_key = s.send_id;

CREATE OR REPLACE VIEW stg_support_tickets AS
SELECT m.unified_id,
       t.ticket_id,
       nullif(trim(t.name), '') AS name,
       coalesce(normalize_phone(t.phone), normalize_phone('+' || t.phone)) AS phone,
       t.subject,
       t.status,
       CAST(t.opened_at AS TIMESTAMP) AS opened_at
  FROM identity_map m
  JOIN support_tickets t ON m.source = 'support_tickets' AND m.record_key = t.ticket_id;

CREATE OR REPLACE VIEW stg_consent_changes AS
SELECT m.unified_id,
       c.change_id,
       lower(trim(c.purpose)) AS purpose,
       CAST(c.granted AS BOOLEAN) AS granted,
       CAST(c.changed_at AS TIMESTAMP) AS changed_at,
       c.source AS origin
  FROM identity_map m
  JOIN consent_changes c ON m.source = 'consent_changes' AND m.record_key = c.change_id;
