-- Identity edges: one row per identifier seen on a source record, normalised so the same
-- person's identifiers compare equal across systems.
--   source      the relation the record comes from (also the ground truth's source)
--   record_key  the record's key in that relation
--   id_type     customer_id | email | phone | anonymous_id
--   id_value    the normalised identifier (NULL when missing or invalid: the record
--               still gets a unified id, it just links through nothing)
-- Phones without a country: CRM contacts carry one; elsewhere a number written with
-- `+` or `00` is read as is, and digits that form a valid number once `+` is put in
-- front (`13037438289`) are read that way. Purely national numbers stay unlinked.
-- Events collected over HTTP (tessera.events, source 'events', record_key
-- '<write key source>:<messageId>') link their anonymousId, userId (the CRM customer id)
-- and traits.email; an alias call also links its previousId (taken as an anonymous id).
CREATE OR REPLACE VIEW identity_edges AS
SELECT 'crm_contacts' AS source, contact_id AS record_key, 'customer_id' AS id_type,
       nullif(upper(trim(contact_id)), '') AS id_value
  FROM crm_contacts
UNION ALL
SELECT 'crm_contacts', contact_id, 'email', normalize_email(email) FROM crm_contacts
UNION ALL
SELECT 'crm_contacts', contact_id, 'phone', normalize_phone(phone, trim(country)) FROM crm_contacts
UNION ALL
SELECT 'shop_orders', order_id, 'email', normalize_email(customer_email) FROM shop_orders
UNION ALL
SELECT 'shop_orders', order_id, 'phone',
       coalesce(normalize_phone(phone), normalize_phone('+' || phone))
  FROM shop_orders
UNION ALL
SELECT 'pos_orders', receipt_id, 'customer_id', nullif(upper(trim(loyalty_id)), '') FROM pos_orders
UNION ALL
SELECT 'pos_orders', receipt_id, 'phone',
       coalesce(normalize_phone(phone), normalize_phone('+' || phone))
  FROM pos_orders
UNION ALL
SELECT 'web_events', event_id, 'anonymous_id', nullif(trim(anonymous_id), '') FROM web_events
UNION ALL
SELECT 'web_events', event_id, 'customer_id', nullif(upper(trim(user_id)), '') FROM web_events
UNION ALL
SELECT 'web_events', event_id, 'email', normalize_email(email) FROM web_events
UNION ALL
SELECT 'email_engagement', send_id, 'email', normalize_email(email) FROM email_engagement
UNION ALL
SELECT 'support_tickets', ticket_id, 'phone',
       coalesce(normalize_phone(phone), normalize_phone('+' || phone))
  FROM support_tickets
UNION ALL
SELECT 'consent_changes', change_id, 'customer_id', nullif(upper(trim(contact_id)), '') FROM consent_changes
UNION ALL
SELECT 'consent_changes', change_id, 'email', normalize_email(email) FROM consent_changes
UNION ALL
SELECT 'events', source || ':' || message_id, 'anonymous_id', nullif(trim(anonymous_id), '')
  FROM tessera.events
UNION ALL
SELECT 'events', source || ':' || message_id, 'customer_id', nullif(upper(trim(user_id)), '')
  FROM tessera.events
UNION ALL
SELECT 'events', source || ':' || message_id, 'email', normalize_email(traits ->> 'email')
  FROM tessera.events
UNION ALL
SELECT 'events', source || ':' || message_id, 'anonymous_id', nullif(trim(previous_id), '')
  FROM tessera.events WHERE type = 'alias';
