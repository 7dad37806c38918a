-- Identity edges: one row per identifier seen on a source record, normalised so the same
-- person's identifiers compare equal across systems.
--   source      the relation the record comes from (also the ground truth's source)
--   record_key  the record's key in that relation
--   id_type     customer_id | email | phone | anonymous_id
--   id_value    the normalised identifier
-- Each source is read once: its identifiers are unnested into rows (unnests in one
-- SELECT pair up element by element). A missing or invalid identifier leaves no row,
-- except the source's first (`keep`), kept with a NULL value so that every record
-- gets a unified id even when it links through nothing.
-- Phones without a country: CRM contacts carry one; elsewhere a number written with
-- `+` or `00` is read as is, and digits that form a valid number once `+` is put in
-- front (`13037438289`) are read that way. Purely national numbers stay unlinked.
-- Events collected over HTTP (tessera.events, source 'events', record_key
-- '<write key source>:<messageId>') link their anonymousId, userId (the CRM customer id)
-- and traits.email; an alias call also links its previousId (taken as an anonymous id).
CREATE OR REPLACE VIEW identity_edges AS
WITH unnested AS (
  SELECT 'crm_contacts' AS source, contact_id AS record_key,
         unnest([true, false, false]) AS keep,
         unnest(['customer_id', 'email', 'phone']) AS id_type,
         unnest([nullif(upper(trim(contact_id)), ''), normalize_email(email),
                 normalize_phone(phone, trim(country))]) AS id_value
    FROM crm_contacts
  UNION ALL
  SELECT 'shop_orders', order_id, unnest([true, false]), unnest(['email', 'phone']),
         unnest([normalize_email(customer_email),
                 coalesce(normalize_phone(phone), normalize_phone('+' || phone))])
    FROM shop_orders
  UNION ALL
  SELECT 'pos_orders', receipt_id, unnest([true, false]), unnest(['customer_id', 'phone']),
         unnest([nullif(upper(trim(loyalty_id)), ''),
                 coalesce(normalize_phone(phone), normalize_phone('+' || phone))])
    FROM pos_orders
  UNION ALL
  SELECT 'web_events', event_id, unnest([true, false, false]),
         unnest(['anonymous_id', 'customer_id', 'email']),
         unnest([nullif(trim(anonymous_id), ''), nullif(upper(trim(user_id)), ''),
                 normalize_email(email)])
    FROM web_events
  UNION ALL
  SELECT 'email_engagement', send_id, true, 'email', normalize_email(email)
    FROM email_engagement
  UNION ALL
  SELECT 'support_tickets', ticket_id, true, 'phone',
         coalesce(normalize_phone(phone), normalize_phone('+' || phone))
    FROM support_tickets
  UNION ALL
  SELECT 'consent_changes', change_id, unnest([true, false]), unnest(['customer_id', 'email']),
         unnest([nullif(upper(trim(contact_id)), ''), normalize_email(email)])
    FROM consent_changes
  UNION ALL
  SELECT 'events', key, unnest([true, false, false, false]),
         unnest(['anonymous_id', 'customer_id', 'email', 'anonymous_id']),
         unnest([nullif(trim(anonymous_id), ''), nullif(upper(trim(user_id)), ''),
                 normalize_email(traits ->> 'email'),
                 CASE WHEN type = 'alias' THEN nullif(trim(previous_id), '') END])
    FROM (SELECT source || ':' || message_id AS key, * FROM tessera.events)
)
SELECT source, record_key, id_type, id_value FROM unnested WHERE id_value IS NOT NULL OR keep;

-- The edges stored: every later step (both identity maps, identity_lookup) reads this
-- instead of normalising every source again. Refreshed when the model is applied; a
-- refresh with unchanged sources does no work.
CREATE MATERIALIZED VIEW IF NOT EXISTS identifiers AS
SELECT source, record_key, id_type, id_value FROM identity_edges;
REFRESH MATERIALIZED VIEW identifiers;
