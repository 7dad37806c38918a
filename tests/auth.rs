//! Authentication and roles: SCRAM logins, role statements, the first superuser,
//! `--insecure-no-auth` and TLS, against a real server.

use std::path::Path;
use std::process::Command;

use crate::common::{rows, sqlstate, Server, PASSWORD};

async fn login_error(s: &Server, user: &str, password: &str) -> String {
    match s.connect_as(user, password).await {
        Ok(_) => panic!("{user} logged in with {password:?}"),
        Err(e) => sqlstate(&e),
    }
}

#[tokio::test]
async fn wrong_password_and_unknown_role_fail_and_the_server_keeps_serving() {
    let s = Server::start();
    assert_eq!(login_error(&s, "tessera", "wrong").await, "28P01");
    assert_eq!(login_error(&s, "nobody", "wrong").await, "28P01");
    let e = s
        .connect_as("tessera", "wrong")
        .await
        .err()
        .and_then(|e| e.as_db_error().map(|d| d.message().to_string()));
    assert_eq!(
        e.as_deref(),
        Some("password authentication failed for user \"tessera\"")
    );
    let c = s.client().await;
    assert_eq!(rows(&c, "SELECT 1").await, vec![vec!["1"]]);
}

#[tokio::test]
async fn nologin_role_and_role_without_password_cannot_log_in() {
    let s = Server::start();
    let c = s.client().await;
    c.batch_execute("CREATE ROLE reader PASSWORD 'pw1'; CREATE USER nopass")
        .await
        .expect("create");
    assert_eq!(login_error(&s, "reader", "pw1").await, "28000");
    assert_eq!(login_error(&s, "nopass", "").await, "28P01");
    assert_eq!(login_error(&s, "tessera_pii", "x").await, "28P01");
}

#[tokio::test]
async fn create_alter_drop_role_with_real_logins() {
    let s = Server::start();
    let admin = s.client().await;
    admin
        .batch_execute("CREATE ROLE ann WITH LOGIN PASSWORD 'first-pw'")
        .await
        .expect("create");
    let ann = s.connect_as("ann", "first-pw").await.expect("ann logs in");
    assert_eq!(rows(&ann, "SELECT 1").await, vec![vec!["1"]]);
    admin
        .batch_execute("ALTER ROLE ann PASSWORD 'second-pw'")
        .await
        .expect("alter");
    assert_eq!(login_error(&s, "ann", "first-pw").await, "28P01");
    s.connect_as("ann", "second-pw")
        .await
        .expect("new password");
    admin
        .batch_execute("ALTER ROLE ann RENAME TO anna")
        .await
        .expect("rename");
    s.connect_as("anna", "second-pw")
        .await
        .expect("renamed role");
    admin.batch_execute("DROP ROLE anna").await.expect("drop");
    assert_eq!(login_error(&s, "anna", "second-pw").await, "28P01");
    // The session already open keeps running (PostgreSQL would too).
    assert_eq!(rows(&ann, "SELECT 2").await, vec![vec!["2"]]);
}

#[tokio::test]
async fn role_statements_need_a_superuser_and_report_postgres_errors() {
    let s = Server::start();
    let admin = s.client().await;
    admin
        .batch_execute(
            "CREATE TABLE crm (id INT, email TEXT);
             CREATE USER bob PASSWORD 'bob-pw'",
        )
        .await
        .expect("setup");
    let bob = s.connect_as("bob", "bob-pw").await.expect("bob");
    for (sql, message) in [
        ("CREATE ROLE x", "permission denied to create role"),
        ("DROP ROLE tessera", "permission denied to drop role"),
        (
            "GRANT SELECT ON crm TO bob",
            "permission denied to grant privileges",
        ),
        (
            "GRANT tessera_pii TO bob",
            "permission denied to grant role",
        ),
        (
            "ALTER ROLE bob SUPERUSER",
            "permission denied to alter role",
        ),
    ] {
        let e = bob.batch_execute(sql).await.expect_err(sql);
        assert_eq!(sqlstate(&e), "42501", "{sql}");
        assert_eq!(e.as_db_error().map(|d| d.message()), Some(message));
    }
    // Through the extended protocol too.
    let e = bob
        .execute("CREATE ROLE y", &[])
        .await
        .expect_err("extended");
    assert_eq!(sqlstate(&e), "42501");
    for (sql, code) in [
        ("CREATE ROLE bob", "42710"),
        ("ALTER ROLE nobody LOGIN", "42704"),
        ("DROP ROLE nobody", "42704"),
        ("GRANT SELECT ON nope TO bob", "42P01"),
        ("GRANT SELECT ON crm TO nobody", "42704"),
        ("DROP ROLE tessera", "55006"),
        ("DROP ROLE tessera_pii", "42939"),
        ("ALTER ROLE tessera NOLOGIN", "55000"),
        ("GRANT INSERT ON crm TO bob", "0A000"),
    ] {
        let e = admin.batch_execute(sql).await.expect_err(sql);
        assert_eq!(sqlstate(&e), code, "{sql}: {e}");
    }
    admin
        .batch_execute("DROP ROLE IF EXISTS nobody, bob")
        .await
        .expect("drop if exists");
}

#[tokio::test]
async fn roles_and_grants_survive_a_restart_and_only_verifiers_are_stored() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Server::start_in(dir.path());
    let c = s.client().await;
    c.batch_execute(
        "CREATE TABLE crm (id INT); CREATE VIEW web AS SELECT 1 AS x;
         CREATE USER analyst PASSWORD 'analyst-secret';
         GRANT SELECT ON TABLE crm, web TO analyst;
         GRANT tessera_pii TO analyst;
         ALTER ROLE analyst SET tessera.purpose = 'email_marketing';
         CREATE ROLE team;
         GRANT SELECT ON ALL TABLES IN SCHEMA public TO team",
    )
    .await
    .expect("setup");
    drop(c);
    assert!(s.stop().success());
    let moved = dir.path();
    let s = Server::start_in(moved);
    let c = s.client().await;
    assert_eq!(
        rows(
            &c,
            "SELECT name, login, superuser, pii, purpose, member_of, grants, password
             FROM tessera.roles ORDER BY name"
        )
        .await,
        vec![
            vec![
                "analyst",
                "t",
                "f",
                "t",
                "email_marketing",
                "tessera_pii",
                "crm, web",
                "t"
            ],
            vec![
                "team",
                "f",
                "f",
                "f",
                "NULL",
                "",
                "ALL TABLES IN SCHEMA public",
                "f"
            ],
            vec!["tessera", "t", "t", "t", "NULL", "", "", "t"],
            vec!["tessera_pii", "f", "f", "f", "NULL", "", "", "f"],
        ]
    );
    s.connect_as("analyst", "analyst-secret")
        .await
        .expect("analyst after restart");
    // Dropping a table drops its grants; renaming one carries them along.
    c.batch_execute("ALTER TABLE crm RENAME TO customers; DROP VIEW web")
        .await
        .expect("ddl");
    assert_eq!(
        rows(
            &c,
            "SELECT grants FROM tessera.roles WHERE name = 'analyst'"
        )
        .await,
        vec![vec!["customers"]]
    );
    let stored = std::fs::read_to_string(moved.join("roles.json")).expect("roles.json");
    assert!(!stored.contains("analyst-secret") && !stored.contains(PASSWORD));
    assert!(stored.contains("SCRAM-SHA-256$4096:"), "{stored}");
    assert_mode_600(&moved.join("roles.json"));
}

#[cfg(unix)]
fn assert_mode_600(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "{}", path.display());
}

#[cfg(not(unix))]
fn assert_mode_600(_: &Path) {}

#[tokio::test]
async fn generated_admin_password_is_in_a_private_file_and_works() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Server::spawn_with(&["serve"], dir.path(), &[("TESSERA_ADMIN_PASSWORD", "")]);
    let file = dir.path().join("admin-password");
    assert_mode_600(&file);
    let password = std::fs::read_to_string(&file).expect("admin-password");
    let password = password.trim();
    assert!(password.len() >= 20 && password != PASSWORD);
    let c = s
        .connect_as("tessera", password)
        .await
        .expect("generated password");
    assert_eq!(rows(&c, "SELECT 1").await, vec![vec!["1"]]);
    assert_eq!(login_error(&s, "tessera", PASSWORD).await, "28P01");
    // A later start keeps the stored roles: the environment's password is ignored.
    drop(c);
    drop(s);
    let s = Server::start_in(dir.path());
    s.connect_as("tessera", password)
        .await
        .expect("still the file's");
    assert_eq!(login_error(&s, "tessera", PASSWORD).await, "28P01");
}

#[tokio::test]
async fn insecure_no_auth_needs_no_password_but_an_existing_login_role() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Server::spawn_with(&["serve", "--insecure-no-auth"], dir.path(), &[]);
    let c = s.connect_as("tessera", "").await.expect("no password");
    c.batch_execute("CREATE ROLE quiet").await.expect("create");
    assert_eq!(login_error(&s, "nobody", "").await, "28000");
    assert_eq!(login_error(&s, "quiet", "").await, "28000");
}

fn self_signed_certificate(dir: &Path) -> (String, String) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
        ])
        .args(["-days", "1", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl is installed");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        cert.to_string_lossy().into_owned(),
        key.to_string_lossy().into_owned(),
    )
}

fn psql(port: u16, sslmode: &str, sql: &str) -> (bool, String) {
    let out = Command::new("psql")
        .arg(format!(
            "host=127.0.0.1 port={port} dbname=tessera user=tessera sslmode={sslmode}"
        ))
        .args(["-X", "-At", "-c", sql])
        .env("PGPASSWORD", PASSWORD)
        .output()
        .expect("psql is installed");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn tls_serves_sslmode_require_and_still_accepts_plain_text() {
    let certs = tempfile::tempdir().expect("tempdir");
    let (cert, key) = self_signed_certificate(certs.path());
    let data = tempfile::tempdir().expect("tempdir");
    let s = Server::spawn_with(
        &["serve", "--tls-cert", &cert, "--tls-key", &key],
        data.path(),
        &[],
    );
    let (ok, out) = psql(s.port, "require", "SELECT 40 + 2");
    assert!(ok && out.trim() == "42", "{out}");
    let (ok, out) = psql(s.port, "require", "\\conninfo");
    assert!(ok && out.contains("SSL connection"), "{out}");
    // Plain text stays allowed (documented), and needs the password all the same.
    let (ok, out) = psql(s.port, "disable", "SELECT 1");
    assert!(ok && out.trim() == "1", "{out}");
}

fn failed_start(args: &[&str]) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--http",
            "off",
            "--data-dir",
        ])
        .arg(dir.path())
        .args(args)
        .env("TESSERA_ADMIN_PASSWORD", PASSWORD)
        .output()
        .expect("run tessera");
    assert!(!out.status.success(), "started with {args:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn bad_tls_files_stop_start_up_naming_the_file() {
    let certs = tempfile::tempdir().expect("tempdir");
    let (cert, key) = self_signed_certificate(certs.path());
    let missing = certs.path().join("missing-cert.pem");
    let missing = missing.to_string_lossy();
    let err = failed_start(&["--tls-cert", &missing, "--tls-key", &key]);
    assert!(err.contains("missing-cert.pem"), "{err}");
    // A key file that is not a key.
    let err = failed_start(&["--tls-cert", &cert, "--tls-key", &cert]);
    assert!(
        err.contains("TLS key file") && err.contains("cert.pem"),
        "{err}"
    );
    let err = failed_start(&["--tls-cert", &cert]);
    assert!(err.contains("--tls-key"), "{err}");
}

#[tokio::test]
async fn current_user_is_the_role_that_logged_in() {
    let s = Server::start();
    let c = s.client().await;
    c.batch_execute("CREATE ROLE bob LOGIN PASSWORD 'bob-pw'")
        .await
        .expect("role");
    assert_eq!(
        rows(&c, "SELECT current_user, session_user").await,
        vec![vec!["tessera", "tessera"]]
    );
    let bob = s.connect_as("bob", "bob-pw").await.expect("bob");
    assert_eq!(
        rows(&bob, "SELECT current_user, session_user, user").await,
        vec![vec!["bob", "bob", "bob"]]
    );
    // pg_roles lists the roles (psql's \du is tested in psql.rs).
    assert_eq!(
        rows(
            &bob,
            "SELECT rolname, rolsuper, rolcanlogin FROM pg_catalog.pg_roles ORDER BY rolname"
        )
        .await,
        vec![
            vec!["bob", "f", "t"],
            vec!["tessera", "t", "t"],
            vec!["tessera_pii", "f", "f"]
        ]
    );
    // The extended protocol plans the statement at Parse and runs it at Execute.
    let row = bob
        .query_one("SELECT current_user", &[])
        .await
        .expect("query");
    assert_eq!(row.get::<_, &str>(0), "bob");
}
