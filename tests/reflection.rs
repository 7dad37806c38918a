//! What reflecting clients (SQLAlchemy's inspector, pandas' `to_sql`, psycopg's type
//! lookup) read from the catalog, and select list subqueries of user queries.

use crate::common::{rows, Server};

#[tokio::test]
async fn select_list_subqueries_are_evaluated_not_nulled() {
    let s = Server::start();
    let c = s.client().await;
    c.batch_execute(
        "CREATE TABLE customers (id INT, name TEXT); \
         CREATE TABLE orders (customer INT, amount INT); \
         INSERT INTO customers VALUES (1, 'ann'), (2, 'bob'); \
         INSERT INTO orders VALUES (1, 10), (1, 5), (2, 7)",
    )
    .await
    .expect("setup");
    // datafusion-postgres alone answers NULL for a correlated subquery in the select list.
    assert_eq!(
        rows(
            &c,
            "SELECT c.name, (SELECT count(*) FROM orders o WHERE o.customer = c.id) AS n, \
             (SELECT max(o.amount) FROM orders o WHERE o.customer = c.id) AS top \
             FROM customers c ORDER BY c.id"
        )
        .await,
        vec![vec!["ann", "2", "10"], vec!["bob", "1", "7"]]
    );
    // A query the compatibility fallback rewrites (current_role) keeps its user
    // subqueries as they are: the inner `amount` is the subquery's own column.
    assert_eq!(
        rows(
            &c,
            "SELECT current_role IS NOT NULL, CASE WHEN c.id > 0 THEN (SELECT count(*) FROM orders o \
             WHERE o.customer = c.id AND amount > 6) END FROM customers c ORDER BY c.id"
        )
        .await,
        vec![vec!["t", "1"], vec!["t", "1"]]
    );
    // The extended protocol plans it the same way.
    let got = c
        .query(
            "SELECT c.name, (SELECT count(*) FROM orders o WHERE o.customer = c.id AND o.amount > $1) \
             FROM customers c ORDER BY c.id",
            &[&4i32],
        )
        .await
        .expect("extended");
    let got: Vec<(String, i64)> = got.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(got, vec![("ann".into(), 2), ("bob".into(), 1)]);
}

#[tokio::test]
async fn reflection_functions_and_catalog_rows() {
    let s = Server::start();
    let c = s.client().await;
    c.batch_execute(
        "CREATE TABLE accounts (region TEXT, id INT, name TEXT, PRIMARY KEY (id, region))",
    )
    .await
    .expect("create table");
    // Listed as soon as the table exists.
    assert_eq!(
        rows(
            &c,
            "SELECT table_name, column_names, attnums FROM tessera.primary_keys"
        )
        .await,
        vec![vec!["accounts", "{id,region}", "2 1"]]
    );
    c.batch_execute("CREATE VIEW named AS SELECT id, name FROM accounts WHERE name IS NOT NULL")
        .await
        .expect("create view");

    // LIKE with another escape character (SQLAlchemy's schema listing), both protocols.
    assert_eq!(
        rows(&c, "SELECT 'pg_x' LIKE 'pg/_%' ESCAPE '/', 'pgax' LIKE 'pg/_%' ESCAPE '/', 'a\\b' LIKE 'a\\b' ESCAPE '#'").await,
        vec![vec!["t", "f", "t"]]
    );
    let n: i64 = c
        .query_one(
            "SELECT count(*) FROM pg_catalog.pg_namespace WHERE nspname NOT LIKE $1 || '%' ESCAPE '/'",
            &[&"pg/_"],
        )
        .await
        .expect("extended LIKE ESCAPE")
        .get(0);
    let all: i64 = c
        .query_one(
            "SELECT count(*) FROM pg_catalog.pg_namespace WHERE nspname NOT LIKE 'pg\\_%'",
            &[],
        )
        .await
        .expect("backslash")
        .get(0);
    assert_eq!(n, all);

    // Type and JSON functions.
    assert_eq!(
        rows(&c, "SELECT to_regtype('integer'), to_regtype('character varying(20)'), to_regtype('text[]'), to_regtype('hstore') IS NULL").await,
        vec![vec!["23", "1043", "1009", "t"]]
    );
    assert_eq!(
        rows(
            &c,
            "SELECT json_build_object('id', 1, 'name', 'ann', 'vip', true, 'x', NULL)"
        )
        .await,
        vec![vec![
            r#"{"id" : 1, "name" : "ann", "vip" : true, "x" : null}"#
        ]]
    );

    // View definitions: pg_views and pg_get_viewdef (for a view and for another relation).
    assert_eq!(
        rows(
            &c,
            "SELECT definition FROM pg_catalog.pg_views WHERE viewname = 'named'"
        )
        .await,
        vec![vec!["SELECT id, name FROM accounts WHERE name IS NOT NULL"]]
    );
    assert_eq!(
        rows(
            &c,
            "SELECT c.relname, pg_catalog.pg_get_viewdef(c.oid) FROM pg_catalog.pg_class c \
             WHERE c.relname IN ('named', 'accounts') ORDER BY 1"
        )
        .await,
        vec![
            vec!["accounts", "NULL"],
            vec![
                "named",
                "SELECT id, name FROM accounts WHERE name IS NOT NULL"
            ]
        ]
    );

    // The primary key: a constraint and an index over attnums 2 and 1, in key order,
    // and joined as SQLAlchemy joins them.
    assert_eq!(
        rows(
            &c,
            "SELECT con.conname, con.contype, con.conkey FROM pg_catalog.pg_constraint con \
             WHERE con.conrelid = 'accounts'::regclass"
        )
        .await,
        vec![vec!["accounts_pkey", "p", "{2,1}"]]
    );
    assert_eq!(
        rows(
            &c,
            "SELECT i.indkey, i.indnatts, i.indisprimary, i.indisunique FROM pg_catalog.pg_index i \
             WHERE i.indrelid = 'accounts'::regclass"
        )
        .await,
        vec![vec!["2 1", "2", "t", "t"]]
    );
    assert_eq!(
        rows(
            &c,
            "SELECT con.conname, i.indkey FROM pg_catalog.pg_constraint con \
             JOIN pg_catalog.pg_index i ON con.conindid = i.indexrelid \
             WHERE con.contype = 'p' AND con.conrelid IN ('accounts'::regclass)"
        )
        .await,
        vec![vec!["accounts_pkey", "2 1"]]
    );
    assert_eq!(
        rows(
            &c,
            "SELECT relname, reloptions FROM pg_catalog.pg_class WHERE relname = 'accounts'"
        )
        .await,
        vec![vec!["accounts", "NULL"]]
    );

    // SQLAlchemy's column reflection: scalar subqueries inside CASE, with the guard
    // repeated inside; and the positions of an int2vector.
    assert_eq!(
        rows(
            &c,
            "SELECT a.attname, CASE WHEN a.atthasdef THEN (SELECT pg_catalog.pg_get_expr(d.adbin, d.adrelid) \
             FROM pg_catalog.pg_attrdef d WHERE a.atthasdef AND d.adrelid = a.attrelid AND d.adnum = a.attnum) \
             ELSE NULL END AS dflt, \
             CASE WHEN a.attcollation != 0 AND (SELECT t.typcollation FROM pg_catalog.pg_type t \
             WHERE t.oid = a.atttypid) != a.attcollation THEN 'other' END AS coll \
             FROM pg_catalog.pg_attribute a WHERE a.attrelid = 'accounts'::regclass AND a.attnum > 0 \
             ORDER BY a.attnum"
        )
        .await,
        vec![
            vec!["region", "NULL", "NULL"],
            vec!["id", "NULL", "NULL"],
            vec!["name", "NULL", "NULL"]
        ]
    );
    assert_eq!(
        rows(
            &c,
            "SELECT unnest(i.indkey) AS attnum, generate_subscripts(i.indkey, 1) AS ord \
             FROM pg_catalog.pg_index i WHERE i.indrelid = 'accounts'::regclass"
        )
        .await,
        vec![vec!["2", "1"], vec!["1", "2"]]
    );
}

#[tokio::test]
async fn parameters_keep_their_numbers_when_a_catalog_subquery_is_dropped() {
    let s = Server::start();
    let c = s.client().await;
    c.batch_execute("CREATE TABLE accounts (id INT)")
        .await
        .expect("create");
    // datafusion-postgres plans the correlated select list subquery of a catalog query
    // as NULL, so its plan lacks $1; $2 and $3 must still be decoded as text and oid
    // (tokio-postgres encodes them by the types the server describes).
    let row = c
        .query_one(
            "SELECT (SELECT c2.relname FROM pg_catalog.pg_class c2 \
             WHERE c2.oid = c.oid AND c2.relname <> $1) AS other, c.relname \
             FROM pg_catalog.pg_class c WHERE c.relname = $2 AND c.oid > $3",
            &[&"x", &"accounts", &0i32],
        )
        .await
        .expect("parameters bound by number");
    let other: Option<String> = row.get(0);
    let name: String = row.get(1);
    assert_eq!((other, name.as_str()), (None, "accounts"));

    // A quoted mixed-case table has its key listed too.
    c.batch_execute("CREATE TABLE \"MixedCase\" (k INT, id INT, PRIMARY KEY (id))")
        .await
        .expect("mixed case");
    assert_eq!(
        rows(
            &c,
            "SELECT table_name, attnums FROM tessera.primary_keys WHERE table_name = 'MixedCase'"
        )
        .await,
        vec![vec!["MixedCase", "2"]]
    );

    // A prepared catalog query that plans but cannot run as written (a subquery inside
    // CASE, as SQLAlchemy's column reflection sends) is prepared in its rewritten form.
    let got = c
        .query(
            "SELECT a.attname, CASE WHEN a.atthasdef THEN (SELECT pg_catalog.pg_get_expr(d.adbin, d.adrelid) \
             FROM pg_catalog.pg_attrdef d WHERE a.atthasdef AND d.adrelid = a.attrelid \
             AND d.adnum = a.attnum) ELSE NULL END AS dflt \
             FROM pg_catalog.pg_attribute a WHERE a.attrelid = 'accounts'::regclass AND a.attnum > $1",
            &[&0i16],
        )
        .await
        .expect("prepared CASE subquery");
    let got: Vec<(String, Option<String>)> = got.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(got, vec![("id".to_string(), None)]);
}
