-- DuckDB side of benches/model/model_vs_duckdb.py: settings, tessera's functions as
-- macros, and the demo's files as views (read again by every query that uses them, as
-- tessera's external tables are). Not timed. {demo} is replaced by the demo directory.

SET TimeZone = 'UTC';                 -- Parquet timestamps (UTC) cast to TIMESTAMP as in tessera
SET default_null_order = 'nulls_last_on_asc_first_on_desc';   -- as DataFusion and PostgreSQL

-- Survivorship aggregates (udfs/src/survivorship), with their tie rules.
-- latest(v, ts): among rows with v and ts not NULL, the greatest ts; ties: greatest v.
CREATE MACRO latest(v, ts) AS
  (max({'ts': ts, 'v': v}) FILTER (WHERE v IS NOT NULL AND ts IS NOT NULL)).v;
-- first_by_priority(v, p, ts): among rows with v not NULL, the lowest p, then the
-- greatest ts (NULL p or ts rank last), ties: smallest v.
CREATE MACRO first_by_priority(v, p, ts) AS
  (min({'p': coalesce(p, 9223372036854775807),
        'ts': coalesce(-epoch_us(ts), 9223372036854775807), 'v': v})
     FILTER (WHERE v IS NOT NULL)).v;
-- collect_distinct(v): distinct non-NULL values, sorted; NULL (not []) when there are none.
CREATE MACRO collect_distinct(v) AS list(DISTINCT v ORDER BY v) FILTER (WHERE v IS NOT NULL);
-- most_frequent(v): the most frequent non-NULL value; ties: the smallest (mode takes the
-- first of the tied values in its input order).
CREATE MACRO most_frequent(v) AS mode(v ORDER BY v);

-- Normalisers, SIMPLER than tessera's (udfs/src/normalize): the same NULL for the
-- malformed addresses the demo writes (no dot in the domain, doubled dots, ...), but no
-- +tag or gmail-dot removal, no punycode; phones keep their digits behind a '+', with no
-- libphonenumber validation and no use of the region.
CREATE MACRO normalize_email(e) AS
  CASE WHEN regexp_full_match(lower(trim(e, ' ' || chr(9) || chr(10) || chr(13))),
                              '[^@\s.]+(\.[^@\s.]+)*@[^@\s.]+(\.[^@\s.]+)+')
       THEN lower(trim(e, ' ' || chr(9) || chr(10) || chr(13))) END;
CREATE MACRO phone_digits(p) AS
  CASE WHEN length(regexp_replace(p, '[^0-9]', '', 'g')) >= 5
       THEN '+' || regexp_replace(p, '[^0-9]', '', 'g') END;
CREATE MACRO normalize_phone(p) AS phone_digits(p), (p, region) AS phone_digits(p);

-- The sources, typed as tessera's demo registers them (src/demo/install.rs: CSV columns
-- TEXT; Parquet as stored; NDJSON as DataFusion infers it, every field text).
CREATE VIEW crm_contacts AS SELECT * FROM read_csv('{demo}/crm_contacts.csv', header = true, all_varchar = true);
CREATE VIEW email_engagement AS SELECT * FROM read_csv('{demo}/email_engagement.csv', header = true, all_varchar = true);
CREATE VIEW support_tickets AS SELECT * FROM read_csv('{demo}/support_tickets.csv', header = true, all_varchar = true);
CREATE VIEW consent_changes AS SELECT * FROM read_csv('{demo}/consent_changes.csv', header = true, all_varchar = true);
CREATE VIEW shop_orders AS SELECT * FROM read_parquet('{demo}/shop_orders.parquet');
CREATE VIEW pos_orders AS SELECT * FROM read_parquet('{demo}/pos_orders.parquet');
CREATE VIEW web_events AS SELECT * FROM read_json('{demo}/web_events.ndjson', format = 'newline_delimited',
  columns = {event_id: 'VARCHAR', anonymous_id: 'VARCHAR', user_id: 'VARCHAR', email: 'VARCHAR',
             event_type: 'VARCHAR', url: 'VARCHAR', device: 'VARCHAR', occurred_at: 'VARCHAR'});
