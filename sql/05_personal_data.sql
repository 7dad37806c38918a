-- Personal data in the sources, classified so that roles without the PII privilege
-- (neither superusers nor members of tessera_pii) read it masked on every path: these
-- tables, the views over them, and the materialised views computed from them (whose
-- columns inherit these classes). The class picks the mask:
--   pii:email -> mask_email   a***@example.com (the domain stays)
--   pii:phone -> mask_phone   +**********23
--   pii:id    -> pseudonymize a keyed hash: still joins and counts distinct
--   pii, pii:<anything else> -> redact   [redacted] (NULL for non-text values)
-- City and country stay readable for analysis; street, postcode and birth date do not.
-- Customer numbers are identifiers too: they are pseudonymised, and `forget_subject`
-- finds an erased person's records by them (see the README, Right to be forgotten).
COMMENT ON COLUMN crm_contacts.contact_id IS 'pii:id';
COMMENT ON COLUMN crm_contacts.first_name IS 'pii:name';
COMMENT ON COLUMN crm_contacts.last_name IS 'pii:name';
COMMENT ON COLUMN crm_contacts.email IS 'pii:email';
COMMENT ON COLUMN crm_contacts.phone IS 'pii:phone';
COMMENT ON COLUMN crm_contacts.street IS 'pii:address';
COMMENT ON COLUMN crm_contacts.postcode IS 'pii:address';
COMMENT ON COLUMN crm_contacts.birth_date IS 'pii:birth_date';

COMMENT ON COLUMN shop_orders.customer_email IS 'pii:email';
COMMENT ON COLUMN shop_orders.customer_name IS 'pii:name';
COMMENT ON COLUMN shop_orders.phone IS 'pii:phone';

COMMENT ON COLUMN pos_orders.loyalty_id IS 'pii:id';
COMMENT ON COLUMN pos_orders.phone IS 'pii:phone';

COMMENT ON COLUMN web_events.anonymous_id IS 'pii:id';
COMMENT ON COLUMN web_events.user_id IS 'pii:id';
COMMENT ON COLUMN web_events.email IS 'pii:email';

COMMENT ON COLUMN email_engagement.email IS 'pii:email';

COMMENT ON COLUMN support_tickets.name IS 'pii:name';
COMMENT ON COLUMN support_tickets.phone IS 'pii:phone';

COMMENT ON COLUMN consent_changes.email IS 'pii:email';
COMMENT ON COLUMN consent_changes.contact_id IS 'pii:id';
