-- Harmonisation: one view per source in a common shape, with the person each record
-- belongs to (unified_id, from identity_map). Text is trimmed, identifiers normalised,
-- timestamps typed (UTC), amounts converted to EUR. Profiles and segments read these
-- views, never the raw sources, so a new source only needs a view here (and its edges in
-- 10_identity_edges.sql). Each view reads identity_map first: DataFusion builds a join's
-- hash table from its first input when it cannot tell the sizes (CSV and JSON files say
-- nothing of theirs), and the map's two narrow columns hash in far less memory than a
-- source's rows (31M web events at 1M demo customers).

-- Exchange rates to EUR for order amounts (fixed demo rates; replace with a real table).
CREATE OR REPLACE VIEW fx_rates AS
SELECT * FROM (VALUES ('EUR', 1.0), ('USD', 0.92), ('GBP', 1.17), ('CHF', 1.05))
  AS t(currency, to_eur);

-- CRM contacts: names, address and birth date as entered, identifiers normalised.
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

-- Orders from the web shop and the stores' tills, one row per order.
--   channel   'web' or 'store'
--   status    'paid', 'refunded' or 'cancelled' (till receipts are paid)
--   total_eur the amount in EUR to the cent, as a decimal: sums of it do not depend on
--             the order of the additions (till receipts are taken to be in EUR)
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

-- Web and app events, from the web_events export and from the events collected over
-- HTTP. anonymous_id is the cookie or device id; customer_id is set once the visitor
-- has logged in.
--   event_type  page_view | product_view | add_to_cart | checkout | login | logout | signup
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
  JOIN web_events e ON m.source = 'web_events' AND m.record_key = e.event_id
UNION ALL
-- Page, screen and track calls collected over HTTP (tessera.events); track events named
-- as in Segment's e-commerce spec map to the web event types.
SELECT m.unified_id,
       v.source || ':' || v.message_id AS event_id,
       nullif(trim(v.anonymous_id), '') AS anonymous_id,
       nullif(upper(trim(v.user_id)), '') AS customer_id,
       normalize_email(v.traits ->> 'email') AS email,
       CASE
         WHEN v.type IN ('page', 'screen') THEN 'page_view'
         WHEN v.event = 'Product Viewed' THEN 'product_view'
         WHEN v.event = 'Product Added' THEN 'add_to_cart'
         WHEN v.event IN ('Checkout Started', 'Order Completed') THEN 'checkout'
         WHEN v.event = 'Signed In' THEN 'login'
         WHEN v.event = 'Signed Out' THEN 'logout'
         WHEN v.event = 'Signed Up' THEN 'signup'
         ELSE lower(v.event)
       END AS event_type,
       coalesce(v.properties ->> 'url', v.context -> 'page' ->> 'url') AS url,
       coalesce(v.context -> 'device' ->> 'type', CASE WHEN v.type = 'screen' THEN 'mobile' ELSE 'desktop' END) AS device,
       CAST(v.timestamp AS TIMESTAMP) AS occurred_at
  FROM identity_map m
  JOIN tessera.events v ON m.source = 'events' AND m.record_key = v.source || ':' || v.message_id
 WHERE v.type IN ('page', 'screen', 'track');

-- Email engagement from the email service provider.
--   event  sent | open | click | bounce | unsubscribe
CREATE OR REPLACE VIEW stg_email_events AS
SELECT m.unified_id,
       s.send_id,
       normalize_email(s.email) AS email,
       s.campaign,
       s.event,
       CAST(s.occurred_at AS TIMESTAMP) AS occurred_at
  FROM identity_map m
  JOIN email_engagement s ON m.source = 'email_engagement' AND m.record_key = s.send_id;

-- Support tickets: only a name and a phone number identify the customer.
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

-- Consent changes over time: a purpose granted or withdrawn.
--   purpose  email_marketing | sms_marketing | analytics | personalization
CREATE OR REPLACE VIEW stg_consent_changes AS
SELECT m.unified_id,
       c.change_id,
       lower(trim(c.purpose)) AS purpose,
       CAST(c.granted AS BOOLEAN) AS granted,
       CAST(c.changed_at AS TIMESTAMP) AS changed_at,
       c.source AS origin
  FROM identity_map m
  JOIN consent_changes c ON m.source = 'consent_changes' AND m.record_key = c.change_id;
