//! SQL over the wire: DDL, DML with command tags in both protocols, views, errors.

use crate::common::{explain, rows, sqlstate, Server};
use tokio_postgres::types::ToSql;
use tokio_postgres::SimpleQueryMessage;

type P = dyn ToSql + Sync;

fn tags(msgs: &[SimpleQueryMessage]) -> Vec<u64> {
    msgs.iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::CommandComplete(n) => Some(*n),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn managed_table_dml_round_trip() {
    let s = Server::start();
    let c = s.client().await;
    c.batch_execute(
        "CREATE TABLE people (id BIGINT PRIMARY KEY, name TEXT, score DOUBLE PRECISION)",
    )
    .await
    .expect("create");
    let m = c
        .simple_query("INSERT INTO people VALUES (1, 'ann', 1.5), (2, 'bob', 2.0), (3, 'cy', NULL)")
        .await
        .expect("insert");
    assert_eq!(tags(&m), vec![3]);
    // Shapes DataFusion would hand the table as "no filter" never touch every row.
    let e = c
        .batch_execute("DELETE FROM people WHERE id IN (SELECT id FROM people WHERE id = 2)")
        .await
        .expect_err("subquery");
    assert_eq!(sqlstate(&e), "0A000");
    let m = c
        .simple_query("DELETE FROM people WHERE false")
        .await
        .expect("where false");
    assert_eq!(tags(&m), vec![0]);
    let m = c
        .simple_query("UPDATE people SET score = 0 WHERE 1 = 0")
        .await
        .expect("no rows");
    assert_eq!(tags(&m), vec![0]);
    assert_eq!(
        rows(
            &c,
            "SELECT count(*) FROM people WHERE score IS NULL OR score > 0"
        )
        .await,
        vec![vec!["3"]]
    );
    assert_eq!(
        tags(
            &c.simple_query("UPDATE people SET score = 9.5 WHERE id >= 2")
                .await
                .expect("update")
        ),
        vec![2]
    );
    assert_eq!(
        tags(
            &c.simple_query("DELETE FROM people WHERE name = 'ann'")
                .await
                .expect("delete")
        ),
        vec![1]
    );
    assert_eq!(
        rows(&c, "SELECT id, name, score FROM people ORDER BY id").await,
        vec![vec!["2", "bob", "9.5"], vec!["3", "cy", "9.5"]]
    );
    let m = c.simple_query("TRUNCATE people").await.expect("truncate");
    assert_eq!(
        tags(&m),
        vec![0],
        "TRUNCATE reports no row count, as in PostgreSQL"
    );
    assert_eq!(
        rows(&c, "SELECT count(*) FROM people").await,
        vec![vec!["0"]]
    );
}

#[tokio::test]
async fn extended_protocol_params_and_command_tags() {
    let s = Server::start();
    let c = s.client().await;
    c.batch_execute("CREATE TABLE t (id INT, name TEXT)")
        .await
        .expect("create");
    let insert = c
        .prepare("INSERT INTO t VALUES ($1, $2)")
        .await
        .expect("prepare");
    for i in 0..7 {
        // Past the 5th execution, as pgjdbc switches to a named server-side statement.
        let name = format!("n{i}");
        let n = c
            .execute(&insert, &[&i as &P, &name])
            .await
            .expect("insert");
        assert_eq!(n, 1);
    }
    assert_eq!(
        c.execute(
            "UPDATE t SET name = $1 WHERE id < $2",
            &[&"low" as &P, &3i32]
        )
        .await
        .expect("update"),
        3
    );
    assert_eq!(
        c.execute("DELETE FROM t WHERE id = $1", &[&6i32 as &P])
            .await
            .expect("delete"),
        1
    );
    let row = c
        .query_one(
            "SELECT count(*) AS n, max(id) AS m FROM t WHERE name = $1",
            &[&"low"],
        )
        .await
        .expect("select");
    assert_eq!(row.get::<_, i64>("n"), 3);
    assert_eq!(row.get::<_, i32>("m"), 2);
    // CREATE TABLE AS answers with a tag, not rows, in the extended protocol too.
    assert_eq!(
        c.execute("CREATE TABLE t2 AS SELECT * FROM t WHERE id > 2", &[])
            .await
            .expect("ctas"),
        3
    );
    assert_eq!(rows(&c, "SELECT count(*) FROM t2").await, vec![vec!["3"]]);
}

#[tokio::test]
async fn views_drop_cascade_and_rename() {
    let s = Server::start();
    let c = s.client().await;
    c.batch_execute(
        "CREATE TABLE base (id INT, v TEXT);
         INSERT INTO base VALUES (1, 'x'), (2, 'y');
         CREATE VIEW only_x AS SELECT * FROM base WHERE v = 'x';
         CREATE VIEW on_view AS SELECT count(*) AS n FROM only_x;",
    )
    .await
    .expect("setup");
    assert_eq!(rows(&c, "SELECT n FROM on_view").await, vec![vec!["1"]]);

    let e = c
        .batch_execute("DROP TABLE base")
        .await
        .expect_err("dependents");
    assert_eq!(sqlstate(&e), "2BP01");
    assert!(
        e.to_string().contains("only_x") || format!("{:?}", e.as_db_error()).contains("only_x")
    );

    c.batch_execute("ALTER TABLE base RENAME TO renamed")
        .await
        .expect("rename table");
    assert_eq!(
        rows(&c, "SELECT n FROM on_view").await,
        vec![vec!["1"]],
        "views follow a renamed table"
    );
    c.batch_execute("ALTER VIEW only_x RENAME TO just_x")
        .await
        .expect("rename view");
    assert_eq!(
        rows(&c, "SELECT count(*) FROM just_x").await,
        vec![vec!["1"]]
    );
    assert_eq!(
        sqlstate(
            &c.batch_execute("SELECT * FROM only_x")
                .await
                .expect_err("old name")
        ),
        "42P01"
    );

    c.batch_execute("DROP TABLE renamed CASCADE")
        .await
        .expect("cascade");
    for gone in ["renamed", "just_x", "on_view"] {
        let e = c
            .batch_execute(&format!("SELECT * FROM {gone}"))
            .await
            .expect_err("dropped");
        assert_eq!(sqlstate(&e), "42P01", "{gone}");
    }
    c.batch_execute("DROP VIEW IF EXISTS nothing_here")
        .await
        .expect("if exists");
}

#[tokio::test]
async fn errors_carry_sqlstate_and_position() {
    let s = Server::start();
    let c = s.client().await;
    let e = c
        .batch_execute("SELECT 1; SELEC 2")
        .await
        .expect_err("syntax");
    assert_eq!(sqlstate(&e), "42601");
    let pos = e.as_db_error().and_then(|d| d.position().cloned());
    assert!(
        matches!(
            pos,
            Some(tokio_postgres::error::ErrorPosition::Original(11))
        ),
        "position of SELEC in the whole string: {pos:?}"
    );
    assert_eq!(
        sqlstate(
            &c.batch_execute("SELECT * FROM missing_table")
                .await
                .expect_err("undef")
        ),
        "42P01"
    );
    assert_eq!(
        sqlstate(
            &c.batch_execute("CREATE VIEW bad AS SELECT * FROM missing_table")
                .await
                .expect_err("view")
        ),
        "42P01"
    );
    c.batch_execute("CREATE TABLE dup (a INT)")
        .await
        .expect("create");
    assert_eq!(
        sqlstate(
            &c.batch_execute("CREATE TABLE dup (a INT)")
                .await
                .expect_err("dup")
        ),
        "42P07"
    );
    c.batch_execute("CREATE TABLE IF NOT EXISTS dup (a INT)")
        .await
        .expect("if not exists");
    // A failed statement leaves nothing behind, and the connection stays usable.
    assert!(c
        .batch_execute("CREATE TABLE ctas_fail AS SELECT 1/0 AS x")
        .await
        .is_err());
    assert_eq!(
        sqlstate(
            &c.batch_execute("SELECT * FROM ctas_fail")
                .await
                .expect_err("gone")
        ),
        "42P01"
    );
    assert_eq!(rows(&c, "SELECT 1").await, vec![vec!["1"]]);
}

#[tokio::test]
async fn server_functions_answer_like_postgres() {
    let s = Server::start();
    let c = s.client().await;
    let v = rows(&c, "SELECT version()").await;
    assert!(v[0][0].starts_with("PostgreSQL 16."), "{v:?}");
    assert!(v[0][0].contains("tessera"));
    assert_eq!(
        rows(&c, "SELECT current_setting('server_version_num')").await,
        vec![vec!["160006"]]
    );
    assert_eq!(
        rows(&c, "SELECT current_database()").await,
        vec![vec!["tessera"]]
    );
    // Values in PostgreSQL's text output: a timestamptz is an instant shown in the
    // session's time zone (UTC), as is now(); floats and timestamps are PostgreSQL's.
    assert_eq!(
        rows(
            &c,
            "SELECT CAST('2024-01-01 00:00:00+02' AS timestamptz), \
                    CAST('2024-01-02 03:04:05.5' AS timestamp), CAST(1e20 AS double precision), \
                    CAST(20 AS double precision), CAST('NaN' AS double precision)"
        )
        .await,
        vec![vec![
            "2023-12-31 22:00:00+00",
            "2024-01-02 03:04:05.5",
            "1e+20",
            "20",
            "NaN"
        ]]
    );
    let now = rows(&c, "SELECT now()").await;
    assert!(now[0][0].ends_with("+00"), "{now:?}");
    // A cursor's rows are written the same way.
    assert_eq!(
        rows(
            &c,
            "BEGIN; DECLARE c CURSOR FOR SELECT CAST(20 AS double precision), \
             CAST('2024-01-02 03:04:05' AS timestamp); FETCH ALL FROM c; CLOSE c; COMMIT"
        )
        .await,
        vec![vec!["20", "2024-01-02 03:04:05"]]
    );
    // json and jsonb are text.
    c.batch_execute(
        "CREATE TABLE docs (doc jsonb, raw json); \
         INSERT INTO docs VALUES ('{\"a\": 1}', '[1, 2]')",
    )
    .await
    .expect("json columns");
    assert_eq!(
        rows(
            &c,
            "SELECT doc, doc ->> 'a', raw, CAST('{}' AS jsonb) FROM docs"
        )
        .await,
        vec![vec!["{\"a\": 1}", "1", "[1, 2]", "{}"]]
    );
    c.batch_execute("DISCARD ALL").await.expect("discard");
}

#[tokio::test]
async fn a_source_directory_reads_the_files_added_to_it() {
    let s = Server::start();
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("day1.csv"), "id,email\n1,a@x.com\n").expect("write");
    let c = s.client().await;
    c.batch_execute(&format!(
        "CREATE EXTERNAL TABLE drops (id BIGINT, email TEXT) STORED AS CSV LOCATION '{}/' \
         OPTIONS ('format.has_header' 'true')",
        dir.path().display()
    ))
    .await
    .expect("external");
    assert_eq!(rows(&c, "SELECT count(*) FROM drops").await, [["1"]]);
    // The next day's file is read by the next query, not after a restart.
    std::fs::write(
        dir.path().join("day2.csv"),
        "id,email\n2,b@y.com\n3,c@z.com\n",
    )
    .expect("write");
    assert_eq!(
        rows(&c, "SELECT id FROM drops ORDER BY id").await,
        [["1"], ["2"], ["3"]]
    );
    std::fs::remove_file(dir.path().join("day1.csv")).expect("remove");
    assert_eq!(rows(&c, "SELECT count(*) FROM drops").await, [["2"]]);
}

/// A source's row count reaches the planner through the node that names it in errors
/// (the join order and `resolve_identities`' buffers are sized by it), and through a
/// window aggregate's view compaction.
#[tokio::test]
async fn parquet_source_statistics_reach_the_planner() {
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use arrow::record_batch::RecordBatch;
    use std::sync::Arc;

    let s = Server::start();
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("people.parquet");
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("email", DataType::Utf8, false),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from(vec![1, 2, 3])),
            Arc::new(StringArray::from(vec!["a@x.com", "b@y.com", "c@z.com"])),
        ],
    )
    .expect("batch");
    let file = std::fs::File::create(&path).expect("create");
    let mut writer = parquet::arrow::ArrowWriter::try_new(file, schema, None).expect("writer");
    writer.write(&batch).expect("write");
    writer.close().expect("close");

    let c = s.client().await;
    c.batch_execute(&format!(
        "CREATE EXTERNAL TABLE people STORED AS PARQUET LOCATION '{}'",
        path.display()
    ))
    .await
    .expect("external");
    c.batch_execute("SET datafusion.explain.show_statistics = true")
        .await
        .expect("set");
    let scan = explain(&c, "SELECT * FROM people").await;
    let line = scan
        .lines()
        .find(|l| l.contains("SourceExec"))
        .unwrap_or_else(|| panic!("no SourceExec in {scan}"));
    assert!(line.contains("Rows=Exact(3)"), "{line}");
    let window = explain(
        &c,
        "SELECT email, row_number() OVER (ORDER BY id) FROM people",
    )
    .await;
    let line = window
        .lines()
        .find(|l| l.contains("CompactViewsExec"))
        .unwrap_or_else(|| panic!("no CompactViewsExec in {window}"));
    assert!(line.contains("Rows=Exact(3)"), "{line}");
}

#[tokio::test]
async fn external_csv_source_and_bad_rows() {
    let s = Server::start();
    let dir = tempfile::tempdir().expect("dir");
    let good = dir.path().join("crm.csv");
    std::fs::write(&good, "id,email\n1,a@x.com\n2,b@y.com\n").expect("write");
    let c = s.client().await;
    c.batch_execute(&format!(
        "CREATE EXTERNAL TABLE crm STORED AS CSV LOCATION '{}' OPTIONS ('format.has_header' 'true')",
        good.display()
    ))
    .await
    .expect("external");
    assert_eq!(
        rows(&c, "SELECT email FROM crm ORDER BY id").await,
        vec![vec!["a@x.com"], vec!["b@y.com"]]
    );

    // A malformed row within the rows read for schema inference fails CREATE, naming
    // the file and the line.
    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, "id,email\n1,a@x.com\n2,b@y.com,extra,fields\n").expect("write");
    let e = c
        .batch_execute(&format!(
            "CREATE EXTERNAL TABLE bad STORED AS CSV LOCATION '{}' OPTIONS ('format.has_header' 'true')",
            bad.display()
        ))
        .await
        .expect_err("malformed row");
    assert_eq!(sqlstate(&e), "22P04");
    let msg = e
        .as_db_error()
        .map(|d| d.message().to_string())
        .unwrap_or_default();
    assert!(
        msg.contains("bad.csv") && msg.contains("line 3"),
        "names file and line: {msg}"
    );
    assert_eq!(
        sqlstate(
            &c.batch_execute("SELECT * FROM bad")
                .await
                .expect_err("not created")
        ),
        "42P01"
    );
    // With declared columns nothing is inferred: the bad row is found when it is read,
    // and the error names the source, its file and the line.
    let late = dir.path().join("late.csv");
    std::fs::write(&late, "id,email\n1,a@x.com\n2,b@y.com\n3,c@z.com,extra\n").expect("write");
    c.batch_execute(&format!(
        "CREATE EXTERNAL TABLE late (id BIGINT, email TEXT) STORED AS CSV LOCATION '{}' OPTIONS ('format.has_header' 'true')",
        late.display()
    ))
    .await
    .expect("declared schema");
    let e = c
        .batch_execute("SELECT * FROM late")
        .await
        .expect_err("bad row read");
    let msg = e
        .as_db_error()
        .map(|d| d.message().to_string())
        .unwrap_or_default();
    assert!(
        msg.contains("source \"late\"") && msg.contains("late.csv") && msg.contains("line"),
        "{msg}"
    );
    // Sources are read-only.
    assert!(c
        .batch_execute("INSERT INTO crm VALUES (3, 'c@z.com')")
        .await
        .is_err());
    // The server is still up.
    assert_eq!(rows(&c, "SELECT count(*) FROM crm").await, vec![vec!["2"]]);
}

#[tokio::test]
async fn external_source_over_http() {
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(
        dir.path().join("remote.csv"),
        "id,email\n1,a@x.com\n2,b@y.com\n3,c@z.com\n",
    )
    .expect("write");
    // A real HTTP server on loopback.
    let mut http = std::process::Command::new("python3")
        .args([
            "-u",
            "-m",
            "http.server",
            "0",
            "--bind",
            "127.0.0.1",
            "--directory",
        ])
        .arg(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("python3 http.server");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(http.stdout.take().expect("stdout")),
        &mut line,
    )
    .expect("banner");
    let port = line
        .split(" port ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .expect("port")
        .to_string();
    // Remote locations are read only under a listed prefix.
    let s = Server::start_with(&["--allow-location", &format!("http://127.0.0.1:{port}/")]);
    let c = s.client().await;
    let result = c
        .batch_execute(&format!(
            "CREATE EXTERNAL TABLE remote STORED AS CSV LOCATION 'http://127.0.0.1:{port}/remote.csv' OPTIONS ('format.has_header' 'true')"
        ))
        .await;
    let count = match result {
        Ok(()) => rows(&c, "SELECT count(*), max(email) FROM remote").await,
        Err(e) => vec![vec![format!("{e:?}")]],
    };
    let _ = http.kill();
    let _ = http.wait();
    assert_eq!(count, vec![vec!["3", "c@z.com"]]);
    // The definition (and its store) survives a restart.
    let data = s.kill9();
    let _ = data;
}

#[tokio::test]
async fn session_statements_clients_send() {
    let s = Server::start();
    let c = s.client().await;
    assert_eq!(rows(&c, "SHOW server_version").await, vec![vec!["16.6"]]);
    assert_eq!(
        rows(&c, "SHOW standard_conforming_strings").await,
        vec![vec!["on"]]
    );
    assert_eq!(
        rows(&c, "SHOW TRANSACTION ISOLATION LEVEL").await,
        vec![vec!["read committed"]]
    );
    c.batch_execute("SET application_name = 'probe'")
        .await
        .expect("set");
    assert_eq!(rows(&c, "SHOW application_name").await, vec![vec!["probe"]]);
    // The extended protocol describes SHOW's one column.
    let row = c
        .query_one("SHOW client_encoding", &[])
        .await
        .expect("extended show");
    assert_eq!(row.columns()[0].name(), "client_encoding");
    assert_eq!(row.get::<_, String>(0), "UTF8");

    c.batch_execute("CREATE TABLE sp (a INT)")
        .await
        .expect("create");
    let m = c
        .simple_query("BEGIN; SAVEPOINT s1; INSERT INTO sp VALUES (1); RELEASE SAVEPOINT s1; COMMIT; DEALLOCATE ALL")
        .await
        .expect("savepoints are accepted");
    assert_eq!(
        m.iter()
            .filter(|x| matches!(x, tokio_postgres::SimpleQueryMessage::CommandComplete(_)))
            .count(),
        6
    );
    assert_eq!(rows(&c, "SELECT count(*) FROM sp").await, vec![vec!["1"]]);
    // A released savepoint is gone (3B001), as in PostgreSQL.
    c.batch_execute("BEGIN; SAVEPOINT s1; RELEASE SAVEPOINT s1")
        .await
        .expect("release");
    let e = c
        .batch_execute("ROLLBACK TO SAVEPOINT s1")
        .await
        .expect_err("released");
    assert_eq!(sqlstate(&e), "3B001");
    c.batch_execute("ROLLBACK").await.expect("rollback");
}

#[tokio::test]
async fn pg_catalog_tells_views_from_tables() {
    let s = Server::start();
    let c = s.client().await;
    c.batch_execute("CREATE TABLE cat_t (a INT); CREATE VIEW cat_v AS SELECT * FROM cat_t")
        .await
        .expect("setup");
    assert_eq!(
        rows(
            &c,
            "SELECT tablename FROM pg_catalog.pg_tables WHERE schemaname = 'public' ORDER BY 1"
        )
        .await,
        vec![vec!["cat_t"]]
    );
    assert_eq!(
        rows(
            &c,
            "SELECT viewname FROM pg_catalog.pg_views WHERE schemaname = 'public' ORDER BY 1"
        )
        .await,
        vec![vec!["cat_v"]]
    );
    // The dependency graph as dbt reads it: view -> rewrite rule -> pg_depend -> relation.
    let deps = "SELECT v.relname, t.relname FROM pg_catalog.pg_rewrite rw \
                JOIN pg_catalog.pg_class v ON rw.ev_class = v.oid \
                JOIN pg_catalog.pg_depend d ON d.objid = rw.oid \
                JOIN pg_catalog.pg_class t ON d.refobjid = t.oid \
                WHERE v.relname LIKE 'cat%' AND d.deptype = 'n'";
    assert_eq!(rows(&c, deps).await, vec![vec!["cat_v", "cat_t"]]);
    // dbt-postgres 1.9's relation-dependency query, verbatim in substance.
    let dbt = "select distinct dependent_namespace.nspname as dependent_schema, dependent_class.relname as dependent_name, \
        referenced_namespace.nspname as referenced_schema, referenced_class.relname as referenced_name \
        from pg_class as dependent_class \
        join pg_namespace as dependent_namespace on dependent_namespace.oid = dependent_class.relnamespace \
        join pg_depend as dependent_depend on dependent_depend.refobjid = dependent_class.oid \
            and dependent_depend.classid = 'pg_rewrite'::regclass and dependent_depend.refclassid = 'pg_class'::regclass \
            and dependent_depend.deptype = 'i' \
        join pg_depend as joining_depend on joining_depend.objid = dependent_depend.objid \
            and joining_depend.classid = 'pg_rewrite'::regclass and joining_depend.refclassid = 'pg_class'::regclass \
            and joining_depend.refobjid != dependent_depend.refobjid \
        join pg_class as referenced_class on referenced_class.oid = joining_depend.refobjid \
        join pg_namespace as referenced_namespace on referenced_namespace.oid = referenced_class.relnamespace \
            and referenced_namespace.nspname != 'information_schema' and referenced_namespace.nspname not like 'pg\\_%' \
        order by dependent_schema, dependent_name, referenced_schema, referenced_name";
    assert_eq!(
        rows(&c, dbt).await,
        vec![vec!["public", "cat_v", "public", "cat_t"]]
    );
    c.batch_execute("DROP VIEW cat_v").await.expect("drop");
    assert!(rows(&c, deps).await.is_empty());
}

const LONG_QUERY: &str = "SELECT count(*) FROM generate_series(1, 20000000000) WHERE value % 7 = 3";

#[tokio::test]
async fn statement_timeout_and_cancel_stop_a_running_query() {
    let s = Server::start();
    let c = s.client().await;
    // A query string whose SELECT is followed by statements that wait on storage is not
    // mistaken for a cancelled one (its rows stream once the whole string has run).
    let m = c
        .simple_query("SELECT 41 + 1; CREATE TABLE after_select (a INT); INSERT INTO after_select VALUES (1); SELECT count(*) FROM after_select")
        .await
        .expect("one string");
    let values: Vec<&str> = m
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => r.get(0),
            _ => None,
        })
        .collect();
    assert_eq!(values, ["42", "1"]);
    c.batch_execute("SET statement_timeout = '300ms'")
        .await
        .expect("set");
    let started = std::time::Instant::now();
    let e = c.simple_query(LONG_QUERY).await.expect_err("times out");
    assert_eq!(sqlstate(&e), "57014");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "stopped promptly"
    );
    c.batch_execute("SET statement_timeout = '0'")
        .await
        .expect("reset");
    assert_eq!(rows(&c, "SHOW statement_timeout").await, vec![vec!["0"]]);

    let token = c.cancel_token();
    let running = tokio::spawn(async move {
        let r = c.simple_query(LONG_QUERY).await.map(|_| ());
        (r, c)
    });
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    token
        .cancel_query(tokio_postgres::NoTls)
        .await
        .expect("cancel request sent");
    let (result, c) = running.await.expect("join");
    assert_eq!(sqlstate(&result.expect_err("cancelled")), "57014");
    // The connection goes on.
    assert_eq!(rows(&c, "SELECT 1").await, vec![vec!["1"]]);
}

#[tokio::test]
async fn not_null_defaults_and_failed_transactions() {
    let s = Server::start();
    let c = s.client().await;
    c.batch_execute("CREATE TABLE nn (id INT NOT NULL, v TEXT)")
        .await
        .expect("create");
    let e = c
        .batch_execute("INSERT INTO nn VALUES (NULL, 'x')")
        .await
        .expect_err("not null");
    assert_eq!(sqlstate(&e), "23502");
    c.batch_execute("INSERT INTO nn VALUES (1, NULL)")
        .await
        .expect("nullable column");
    assert_eq!(rows(&c, "SELECT count(*) FROM nn").await, vec![vec!["1"]]);
    let e = c
        .batch_execute("CREATE TABLE d (a INT DEFAULT 5)")
        .await
        .expect_err("defaults");
    assert_eq!(sqlstate(&e), "0A000");
    // CREATE TABLE AS columns are nullable even when the query's are not.
    c.batch_execute("CREATE TABLE lit AS SELECT 1 AS one")
        .await
        .expect("ctas");
    c.batch_execute("INSERT INTO lit VALUES (NULL)")
        .await
        .expect("nullable");

    let e = c
        .batch_execute("ROLLBACK TO SAVEPOINT nowhere")
        .await
        .expect_err("no transaction");
    assert_eq!(sqlstate(&e), "25P01");
    // After an error in a transaction block, writes are refused until ROLLBACK.
    c.batch_execute("BEGIN").await.expect("begin");
    assert!(c
        .batch_execute("SELECT * FROM missing_table")
        .await
        .is_err());
    let e = c
        .batch_execute("INSERT INTO nn VALUES (2, 'lost')")
        .await
        .expect_err("aborted");
    assert_eq!(sqlstate(&e), "25P02");
    c.batch_execute("ROLLBACK").await.expect("rollback");
    assert_eq!(rows(&c, "SELECT count(*) FROM nn").await, vec![vec!["1"]]);
}

#[tokio::test]
async fn prepared_insert_does_not_write_into_a_dropped_table() {
    let s = Server::start();
    let c = s.client().await;
    c.batch_execute("CREATE TABLE swap (id INT)")
        .await
        .expect("create");
    let insert = c
        .prepare("INSERT INTO swap VALUES ($1)")
        .await
        .expect("prepare");
    c.execute(&insert, &[&1i32]).await.expect("first insert");
    c.batch_execute("DROP TABLE swap; CREATE TABLE swap (id INT)")
        .await
        .expect("replace");
    let e = c
        .execute(&insert, &[&2i32])
        .await
        .expect_err("stale statement");
    assert_eq!(sqlstate(&e), "0A000");
    assert_eq!(rows(&c, "SELECT count(*) FROM swap").await, vec![vec!["0"]]);
    // Prepared again, it writes to the new table.
    let insert = c
        .prepare("INSERT INTO swap VALUES ($1)")
        .await
        .expect("prepare again");
    assert_eq!(c.execute(&insert, &[&3i32]).await.expect("insert"), 1);
    assert_eq!(rows(&c, "SELECT id FROM swap").await, vec![vec!["3"]]);
}

#[tokio::test]
async fn garbage_bytes_close_only_that_connection() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = Server::start();
    let c = s.client().await;
    for garbage in [
        &b"\x00\x00\x00\x08\xde\xad\xbe\xef"[..],
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        &[0xffu8; 64][..],
    ] {
        let mut raw = tokio::net::TcpStream::connect(("127.0.0.1", s.port))
            .await
            .expect("connect");
        raw.write_all(garbage).await.expect("write");
        let mut buf = vec![0u8; 1024];
        // The server answers with an error or just hangs up; either way it closes.
        let closed = tokio::time::timeout(std::time::Duration::from_secs(20), async {
            loop {
                match raw.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => continue,
                }
            }
        })
        .await;
        assert!(closed.is_ok(), "connection closed after {garbage:?}");
    }
    // The established session and new ones still work.
    assert_eq!(rows(&c, "SELECT 1").await, vec![vec!["1"]]);
    assert_eq!(rows(&s.client().await, "SELECT 2").await, vec![vec!["2"]]);
}

#[tokio::test]
async fn postgres_column_names_and_cursors_with_parameters() {
    let s = Server::start();
    let c = s.client().await;
    // Duplicate unnamed columns are allowed and named as PostgreSQL names them.
    let row = c
        .query_one("SELECT 1, 1, count(*) FROM (VALUES (1)) t(x)", &[])
        .await
        .expect("extended");
    let names: Vec<&str> = row.columns().iter().map(|c| c.name()).collect();
    assert_eq!(names, ["?column?", "?column?", "count"]);
    let m = c.simple_query("SELECT 2, 2").await.expect("simple");
    let Some(tokio_postgres::SimpleQueryMessage::Row(r)) = m
        .iter()
        .find(|m| matches!(m, tokio_postgres::SimpleQueryMessage::Row(_)))
    else {
        panic!("no row")
    };
    assert_eq!(r.columns()[1].name(), "?column?");

    // A cursor declared with a bound parameter (psycopg 3's named cursors do this).
    c.batch_execute("CREATE TABLE cur (id INT); INSERT INTO cur VALUES (1), (2), (3), (4)")
        .await
        .expect("setup");
    c.batch_execute("BEGIN").await.expect("begin");
    let declare = c
        .prepare_typed(
            "DECLARE big CURSOR FOR SELECT id FROM cur WHERE id > $1 ORDER BY id",
            &[tokio_postgres::types::Type::INT4],
        )
        .await
        .expect("prepare declare");
    c.execute(&declare, &[&1i32]).await.expect("declare");
    assert_eq!(
        rows(&c, "FETCH 2 FROM big").await,
        vec![vec!["2"], vec!["3"]]
    );
    assert_eq!(rows(&c, "FETCH ALL FROM big").await, vec![vec!["4"]]);
    c.batch_execute("CLOSE big; COMMIT").await.expect("close");
}

#[tokio::test]
async fn json_operators_with_postgres_precedence() {
    let s = Server::start();
    let c = s.client().await;
    c.batch_execute(
        r#"CREATE TABLE ev (id INT, traits TEXT);
           INSERT INTO ev VALUES (1, '{"email": "ann@x.org", "plan": {"tier": 2}}'), (2, '{"email": "bob@x.org"}');"#,
    )
    .await
    .expect("setup");
    // `->>` binds tighter than `=`, as in PostgreSQL.
    assert_eq!(
        rows(
            &c,
            "SELECT id, traits -> 'plan' ->> 'tier' FROM ev WHERE traits ->> 'email' = 'ann@x.org'"
        )
        .await,
        vec![vec!["1", "2"]]
    );
}

/// A view that reads a replaced view sees the new definition at once (and after a
/// restart), as in PostgreSQL; a replacement that a dependent can no longer read is
/// refused and changes nothing.
#[tokio::test]
async fn replacing_a_view_reaches_the_views_that_read_it() {
    let tmp = tempfile::tempdir().expect("tmp");
    let s = Server::start_in(tmp.path());
    let c = s.client().await;
    c.batch_execute(
        "CREATE TABLE nums AS SELECT n FROM generate_series(1, 10) AS t(n);
         CREATE VIEW small AS SELECT n FROM nums WHERE n <= 3;
         CREATE VIEW small_sum AS SELECT sum(n) AS total FROM small;
         CREATE VIEW small_sum_twice AS SELECT total * 2 AS twice FROM small_sum;
         CREATE OR REPLACE VIEW small AS SELECT n FROM nums WHERE n <= 4;",
    )
    .await
    .expect("setup");
    const SEEN: &str = "SELECT (SELECT total FROM small_sum), (SELECT twice FROM small_sum_twice)";
    assert_eq!(rows(&c, SEEN).await, vec![vec!["10", "20"]]);
    let e = c
        .batch_execute("CREATE OR REPLACE VIEW small AS SELECT n AS m FROM nums")
        .await
        .expect_err("small_sum reads small.n");
    assert_eq!(sqlstate(&e), "42703", "{e:?}");
    let message = e.as_db_error().map(|d| d.message().to_string());
    assert!(
        message.is_some_and(|m| m.contains("view \"small_sum\" depends on it")),
        "{e:?}"
    );
    assert_eq!(rows(&c, SEEN).await, vec![vec!["10", "20"]]);
    assert_eq!(
        rows(&c, "SELECT count(*) FROM small").await,
        vec![vec!["4"]]
    );
    drop(c);
    assert!(s.stop().success());
    let s = Server::start_in(tmp.path());
    let c = s.client().await;
    assert_eq!(rows(&c, SEEN).await, vec![vec!["10", "20"]]);
}
