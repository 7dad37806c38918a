//! A real `tessera serve` process on a free loopback port, with its own data directory.
//! Its superuser `tessera` has the password [`PASSWORD`] (`TESSERA_ADMIN_PASSWORD`).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio_postgres::{Client, NoTls};

/// The password of the superuser `tessera` of every test server.
pub const PASSWORD: &str = "tessera-test-password";

pub struct Server {
    child: Child,
    pub port: u16,
    /// The port of the HTTP collection API (`--http`).
    pub http_port: u16,
    pub data_dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
}

impl Server {
    /// Start a server on a fresh data directory.
    pub fn start() -> Server {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().to_path_buf();
        let mut s = Server::start_in(&dir);
        s._tmp = Some(tmp);
        s
    }

    /// Start `tessera serve` with extra arguments on a fresh data directory.
    pub fn start_with(args: &[&str]) -> Server {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut all = vec!["serve"];
        all.extend_from_slice(args);
        let mut s = Server::spawn_with(&all, tmp.path(), &[]);
        s._tmp = Some(tmp);
        s
    }

    /// Start a server on an existing data directory (to test restarts).
    pub fn start_in(dir: &Path) -> Server {
        Server::spawn(&["serve"], dir)
    }

    /// Run `tessera demo` with `args` on a fresh data directory and wait until it serves.
    pub fn demo(args: &[&str]) -> Server {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut all = vec!["demo"];
        all.extend_from_slice(args);
        let mut s = Server::spawn(&all, tmp.path());
        s._tmp = Some(tmp);
        s
    }

    fn spawn(args: &[&str], dir: &Path) -> Server {
        Server::spawn_with(args, dir, &[])
    }

    /// Start `tessera` with `args` (`serve ...`) and extra environment variables on
    /// `dir`, and wait until it serves. Tests write their source files to temporary
    /// directories, so the system's temporary directory is an allowed location.
    pub fn spawn_with(args: &[&str], dir: &Path, env: &[(&str, &str)]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tessera"))
            .args(args)
            .args([
                "--listen",
                "127.0.0.1:0",
                "--http",
                "127.0.0.1:0",
                "--allow-location",
            ])
            .arg(std::env::temp_dir())
            .arg("--data-dir")
            .arg(dir)
            .env(
                "RUST_LOG",
                std::env::var("TESSERA_TEST_RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .env("TESSERA_ADMIN_PASSWORD", PASSWORD)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn tessera");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let (mut port, mut http_port) = (None, None);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if port.is_none() || http_port.is_none() {
                    // "connect with: psql -h 127.0.0.1 -p PORT -U tessera tessera ..."
                    if let Some(rest) = line
                        .split(" -p ")
                        .nth(1)
                        .filter(|_| line.starts_with("connect with:"))
                    {
                        port = rest
                            .split_whitespace()
                            .next()
                            .map(|p| p.parse::<u16>().ok());
                    }
                    // "http listening on 127.0.0.1:PORT"
                    if let Some(addr) = line.strip_prefix("http listening on ") {
                        http_port = Some(addr.rsplit(':').next().and_then(|p| p.parse().ok()));
                    }
                    if let (Some(p), Some(h)) = (port, http_port) {
                        let _ = tx.send(p.zip(h));
                    }
                }
                if std::env::var_os("TESSERA_TEST_LOG").is_some() {
                    eprintln!("[server] {line}");
                }
            }
        });
        let (port, http_port) = rx
            .recv_timeout(Duration::from_secs(300))
            .ok()
            .flatten()
            .expect("server did not report its addresses");
        Server {
            child,
            port,
            http_port,
            data_dir: dir.to_path_buf(),
            _tmp: None,
        }
    }

    pub async fn client(&self) -> Client {
        let (client, conn) = tokio_postgres::connect(&self.conn_str(), NoTls)
            .await
            .expect("connect");
        tokio::spawn(async move {
            let _ = conn.await;
        });
        client
    }

    pub fn conn_str(&self) -> String {
        self.conn_str_as("tessera", PASSWORD)
    }

    /// The connection string for role `user` with `password`.
    pub fn conn_str_as(&self, user: &str, password: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user={user} password='{password}' dbname=tessera",
            self.port
        )
    }

    /// Connect as `user` with `password`.
    pub async fn connect_as(
        &self,
        user: &str,
        password: &str,
    ) -> Result<Client, tokio_postgres::Error> {
        let (client, conn) =
            tokio_postgres::connect(&self.conn_str_as(user, password), NoTls).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(client)
    }

    /// SIGKILL: no shutdown code runs.
    pub fn kill9(mut self) -> PathBuf {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.data_dir.clone()
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        self.child.wait().expect("wait")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The SQLSTATE of a failed statement.
pub fn sqlstate(e: &tokio_postgres::Error) -> String {
    e.as_db_error()
        .map(|d| d.code().code().to_string())
        .unwrap_or_else(|| format!("not a db error: {e}"))
}

/// All rows of a simple query, as text (NULL as "NULL").
pub async fn rows(c: &Client, sql: &str) -> Vec<Vec<String>> {
    let msgs = c
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    msgs.into_iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(
                (0..r.len())
                    .map(|i| r.get(i).unwrap_or("NULL").to_string())
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

/// The plan of `sql` (`EXPLAIN`), its lines joined.
pub async fn explain(c: &Client, sql: &str) -> String {
    rows(c, &format!("EXPLAIN {sql}"))
        .await
        .into_iter()
        .map(|r| r.join(" "))
        .collect::<Vec<_>>()
        .join("\n")
}
