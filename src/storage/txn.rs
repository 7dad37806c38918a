//! Transaction blocks: the writes between `BEGIN` and `COMMIT` land together, or not at
//! all.
//!
//! The first write of a block to a managed table makes a *fork* of it: a private Delta
//! table under `<table dir>/_txn/<transaction id>/` whose files are hard links to the
//! table's log and data files (taken log first, so every log entry linked finds its data
//! files), so it starts at the table's latest version without copying a byte. Every
//! statement of the block then reads and writes the fork, through the same code as any
//! write (each statement is one Delta commit *of the fork*; a failing statement leaves the
//! fork as it was). Other sessions see none of it: they read the table.
//!
//! `COMMIT` takes the locks of every table the block wrote (in one order, so two commits
//! never wait on each other) and, per table, nets the fork's commits into the files they
//! added and the table's files they removed. A removed file that the table no longer has
//! means another session rewrote the same rows since the fork was made: the commit fails
//! with SQLSTATE 40001 before any table changes. Otherwise the added files are linked into
//! the table's directory and one Delta commit per table lands them, each table in turn.
//! Appends never conflict, so concurrent blocks that insert into one table all commit.
//!
//! `ROLLBACK`, a connection that closes inside a block and a restart delete the forks
//! (the first two once the connection starts its next query or closes: results of the
//! block's last statements may still be streaming from them).
//! `SAVEPOINT` notes each fork's version; `ROLLBACK TO SAVEPOINT` deletes the fork log
//! entries after it (and forks made after it). Statements that change the catalog
//! (`CREATE`, `DROP`, `ALTER`, `REFRESH`) are not part of a block: they commit at once.
//!
//! A table the block wrote is read as of the fork (its first write) plus the block's own
//! changes; others are read at their latest version, as PostgreSQL's READ COMMITTED does.
//! The commit of a block that wrote several tables is one Delta commit per table: a crash
//! between two of them leaves the first committed.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use deltalake::kernel::transaction::CommitBuilder;
use deltalake::kernel::Action;
use deltalake::protocol::{DeltaOperation, SaveMode};

use super::{ManagedTable, TableState};
use crate::engine::error::{EngineError, Result};

/// The directory, in a table's directory, that holds the forks of open transactions
/// (Delta readers and vacuum skip names starting with `_`).
pub const FORKS_DIR: &str = "_txn";

tokio::task_local! {
    static SESSION: Arc<Session>;
}

/// One connection's transaction block, if one is open.
#[derive(Default)]
pub struct Session {
    open: Mutex<Option<Arc<Transaction>>>,
    /// Forks of ended blocks, deleted when the next query starts or the connection ends:
    /// a query string such as `BEGIN; INSERT ...; SELECT ...; COMMIT` has its SELECT's
    /// rows read from the fork after the COMMIT (pgwire streams results once the whole
    /// string has run).
    retired: Mutex<Vec<PathBuf>>,
}

/// Run a connection's `work` with a place for its transaction block; a block still open
/// when the connection ends is rolled back.
pub async fn connection<F: Future>(work: F) -> F::Output {
    let session = Arc::new(Session::default());
    // Dropped however the connection ends, a panic included.
    let _cleanup = Cleanup(session.clone());
    SESSION.scope(session, work).await
}

struct Cleanup(Arc<Session>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(t) = self.0.take() {
            self.0.retire(t.take_dirs());
        }
        self.0.delete_retired();
    }
}

/// Called as each query (a simple query string, or an Execute) starts, with whether the
/// client is outside a block. The forks of ended blocks go: the results that read them
/// have been sent. A block the client is not in goes too (its `BEGIN` ran in a query
/// string that was cancelled before its answers were sent).
pub fn new_query(idle: bool) {
    let _ = SESSION.try_with(|s| {
        if idle {
            if let Some(t) = s.take() {
                s.retire(t.take_dirs());
            }
        }
        s.delete_retired();
    });
}

impl Session {
    fn take(&self) -> Option<Arc<Transaction>> {
        self.open.lock().map(|mut o| o.take()).unwrap_or_default()
    }

    fn retire(&self, dirs: Vec<PathBuf>) {
        match self.retired.lock() {
            Ok(mut r) => r.extend(dirs),
            Err(_) => dirs.iter().for_each(|d| remove_fork(d)),
        }
    }

    fn delete_retired(&self) {
        let dirs = self
            .retired
            .lock()
            .map(|mut r| std::mem::take(&mut *r))
            .unwrap_or_default();
        for d in dirs {
            remove_fork(&d);
        }
    }
}

/// Set aside the forks in `dirs` of a block that ended (or of writes a savepoint undid).
fn retire(dirs: Vec<PathBuf>) {
    if let Err(e) = SESSION.try_with(|s| s.retire(dirs.clone())) {
        tracing::debug!("no session to retire forks in ({e}): deleting them now");
        dirs.iter().for_each(|d| remove_fork(d));
    }
}

/// Run `work` outside the connection's block: it reads committed data only and its writes
/// commit at once (catalog statements and refreshes, which commit on their own: reading
/// the block's writes would publish them before the block commits).
pub async fn outside<F: Future>(work: F) -> F::Output {
    // On the heap: a statement's future is large, and debug builds keep it on the stack
    // of every poll.
    SESSION
        .scope(Arc::new(Session::default()), Box::pin(work))
        .await
}

/// The open transaction block of the connection this task serves.
fn open() -> Option<Arc<Transaction>> {
    SESSION
        .try_with(|s| s.open.lock().ok().and_then(|o| o.clone()))
        .ok()
        .flatten()
}

fn take() -> Option<Arc<Transaction>> {
    SESSION.try_with(|s| s.take()).ok().flatten()
}

/// `BEGIN`: open a block (a no-op outside a connection, and when one is open).
pub fn begin() {
    let _ = SESSION.try_with(|s| {
        if let Ok(mut open) = s.open.lock() {
            open.get_or_insert_with(|| Arc::new(Transaction::new()));
        }
    });
}

/// `COMMIT`: land the block's writes. The block is over whatever the outcome. The commit
/// runs on a task of its own: a COMMIT cancelled or dropped midway still lands whole.
pub async fn commit() -> Result<()> {
    let Some(t) = take() else { return Ok(()) };
    let session = SESSION.try_with(Arc::clone).ok();
    let task = tokio::spawn(async move {
        let outcome = t.commit().await;
        let dirs = t.take_dirs();
        match session {
            Some(s) => s.retire(dirs),
            None => dirs.iter().for_each(|d| remove_fork(d)),
        }
        outcome
    });
    task.await
        .map_err(|e| EngineError::storage("(transaction)", format!("commit task failed: {e}")))?
}

/// `ROLLBACK`: forget the block's writes.
pub fn rollback() {
    if let Some(t) = take() {
        retire(t.take_dirs());
    }
}

/// `SAVEPOINT name`.
pub async fn savepoint(name: &str) {
    if let Some(t) = open() {
        t.savepoint(name).await;
    }
}

/// `RELEASE SAVEPOINT name`: forget it and the savepoints after it.
pub fn release(name: &str) -> Result<()> {
    match open() {
        Some(t) => t.release(name),
        None => Err(no_savepoint(name)),
    }
}

/// `ROLLBACK TO SAVEPOINT name`: undo the block's writes since it (which stays).
pub async fn rollback_to(name: &str) -> Result<()> {
    match open() {
        Some(t) => t.rollback_to(name).await,
        None => Err(no_savepoint(name)),
    }
}

fn no_savepoint(name: &str) -> EngineError {
    EngineError::NoSavepoint(name.to_string())
}

/// The fork `table` has in the open block, if it has one.
pub(super) fn fork_of(table: &ManagedTable) -> Option<ManagedTable> {
    open().and_then(|t| t.fork_of(table))
}

/// The table a write to `table` goes to: in a block, its fork (made now if needed).
pub(super) async fn write_target(table: &ManagedTable) -> Result<ManagedTable> {
    match open() {
        Some(t) => t.fork(table).await,
        None => Ok(table.clone()),
    }
}

/// Delete the forks a server that stopped inside transaction blocks left in the table
/// directories under `tables` (called at start-up, before any connection).
pub fn clear_stale(tables: &Path) {
    let Ok(entries) = std::fs::read_dir(tables) else {
        return;
    };
    for entry in entries.flatten() {
        let forks = entry.path().join(FORKS_DIR);
        if forks.exists() {
            if let Err(e) = std::fs::remove_dir_all(&forks) {
                tracing::warn!("cannot delete {}: {e}", forks.display());
            }
        }
    }
}

#[derive(Clone)]
struct Fork {
    base: ManagedTable,
    table: ManagedTable,
    /// The table's version the fork started from: the fork's own commits come after.
    from: u64,
    dir: PathBuf,
}

struct Savepoint {
    name: String,
    /// The version of each fork made before it, in order.
    versions: Vec<u64>,
}

pub struct Transaction {
    id: String,
    forks: Mutex<Vec<Fork>>,
    savepoints: Mutex<Vec<Savepoint>>,
}

fn poisoned<T>(_: T) -> EngineError {
    EngineError::storage("(transaction)", "transaction state lock poisoned")
}

/// A number no other call in this process got.
fn next_number() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

impl Transaction {
    fn new() -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        Transaction {
            id: format!("{nanos:x}-{}", next_number()),
            forks: Mutex::new(Vec::new()),
            savepoints: Mutex::new(Vec::new()),
        }
    }

    fn fork_of(&self, table: &ManagedTable) -> Option<ManagedTable> {
        let forks = self.forks.lock().ok()?;
        forks
            .iter()
            .find(|f| Arc::ptr_eq(&f.base.state, &table.state))
            .map(|f| f.table.clone())
    }

    async fn fork(&self, table: &ManagedTable) -> Result<ManagedTable> {
        if let Some(f) = self.fork_of(table) {
            return Ok(f);
        }
        // A directory of its own: a fork a savepoint undid may not be deleted yet.
        let dir = table
            .state
            .dir
            .join(FORKS_DIR)
            .join(format!("{}-{}", self.id, next_number()));
        let name = &table.state.name;
        let made = async {
            let started = std::time::Instant::now();
            // No commit, compaction, vacuum or log cleanup while the files are linked.
            let from = {
                let _rewrite = table.state.rewrite.lock().await;
                let guard = table.state.table.lock().await;
                let from = guard
                    .version()
                    .ok_or_else(|| EngineError::storage(name, "the table has no version"))?;
                link_tree(&table.state.dir, &dir, from)?;
                from
            };
            let linked = started.elapsed();
            let fork = ManagedTable::open(name, &dir)
                .await?
                .with_limit_indexes(table.state.limits.clone())?;
            let opened = fork.version().await;
            if opened != Some(from) {
                return Err(EngineError::storage(
                    name,
                    format!("its fork opened at version {opened:?}, not {from}"),
                ));
            }
            tracing::debug!(table = %name, ?linked, opened = ?started.elapsed() - linked, "forked");
            Ok::<_, EngineError>((fork, from))
        }
        .await;
        let (fork, from) = match made {
            Ok(made) => made,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(e);
            }
        };
        self.forks.lock().map_err(poisoned)?.push(Fork {
            base: table.clone(),
            table: fork.clone(),
            from,
            dir,
        });
        Ok(fork)
    }

    /// The forks, in the order they were made (cheap clones: the list's lock is not held
    /// across a wait).
    fn forks(&self) -> Result<Vec<Fork>> {
        Ok(self.forks.lock().map_err(poisoned)?.clone())
    }

    async fn savepoint(&self, name: &str) {
        let Ok(forks) = self.forks() else { return };
        let mut versions = Vec::with_capacity(forks.len());
        for f in &forks {
            versions.push(f.table.committed_version().await);
        }
        if let Ok(mut s) = self.savepoints.lock() {
            s.push(Savepoint {
                name: name.to_string(),
                versions,
            });
        }
    }

    /// The index of the latest savepoint called `name`.
    fn find(&self, name: &str) -> Result<usize> {
        let s = self.savepoints.lock().map_err(poisoned)?;
        s.iter()
            .rposition(|s| s.name == name)
            .ok_or_else(|| no_savepoint(name))
    }

    fn release(&self, name: &str) -> Result<()> {
        let at = self.find(name)?;
        self.savepoints.lock().map_err(poisoned)?.truncate(at);
        Ok(())
    }

    async fn rollback_to(&self, name: &str) -> Result<()> {
        let at = self.find(name)?;
        let versions = {
            let mut s = self.savepoints.lock().map_err(poisoned)?;
            s.truncate(at + 1);
            s[at].versions.clone()
        };
        // Forks made after the savepoint go; the others lose their later commits.
        let later = {
            let mut forks = self.forks.lock().map_err(poisoned)?;
            let at = versions.len().min(forks.len());
            forks.split_off(at)
        };
        retire(later.into_iter().map(|f| f.dir).collect());
        for (i, f) in self.forks()?.into_iter().enumerate() {
            if f.table.committed_version().await <= versions[i] {
                continue;
            }
            let (base, dir) = (f.base, f.dir);
            truncate_log(&dir, versions[i])?;
            let reopened = ManagedTable::open(&base.state.name, &dir)
                .await?
                .with_limit_indexes(base.state.limits.clone())?;
            if let Some(f) = self.forks.lock().map_err(poisoned)?.get_mut(i) {
                f.table = reopened;
            }
        }
        Ok(())
    }

    /// The directories of every fork, which the block no longer uses.
    fn take_dirs(&self) -> Vec<PathBuf> {
        match self.forks.lock() {
            Ok(mut forks) => forks.drain(..).map(|f| f.dir).collect(),
            Err(_) => Vec::new(),
        }
    }

    async fn commit(&self) -> Result<()> {
        let started = std::time::Instant::now();
        let mut forks = Vec::new();
        for f in self.forks()? {
            if !live(&f.base) {
                continue;
            }
            let to = f.table.committed_version().await;
            let changes = Changes::read(&f, to)?;
            if !changes.is_empty() {
                forks.push((f.base, changes));
            }
        }
        if forks.is_empty() {
            return Ok(());
        }
        // One order for every commit, so two never wait on each other.
        forks.sort_by_key(|(t, _)| Arc::as_ptr(&t.state) as usize);
        let mut rewrites = Vec::new();
        for (t, c) in &forks {
            if !c.removes.is_empty() {
                rewrites.push(t.state.rewrite.lock().await);
            }
        }
        let mut guards = Vec::new();
        for (t, _) in &forks {
            guards.push(t.state.table.lock().await);
        }
        // A table dropped since the block wrote to it takes its rows (and fork) with it.
        let live: Vec<bool> = forks.iter().map(|(t, _)| live(t)).collect();
        for (((t, c), guard), live) in forks.iter().zip(&guards).zip(&live) {
            if *live {
                c.check(&t.state, guard)?;
            }
        }
        for (((t, c), guard), live) in forks.iter().zip(guards.iter_mut()).zip(&live) {
            if *live {
                if let Err(e) = c.land(&t.state, guard, &self.id).await {
                    // It may have committed before a later step failed.
                    t.state.reload(guard).await;
                    return Err(e);
                }
            }
        }
        drop(rewrites);
        tracing::debug!(took = ?started.elapsed(), "committed");
        Ok(())
    }
}

/// Whether `table` still exists (`DROP TABLE` deletes its directory, forks included).
fn live(table: &ManagedTable) -> bool {
    table.state.dir.join("_delta_log").is_dir()
}

/// What a fork's commits did to the table: the files they added (and kept) and the
/// table's files they removed.
struct Changes {
    fork_dir: PathBuf,
    adds: Vec<deltalake::kernel::Add>,
    removes: Vec<deltalake::kernel::Remove>,
}

impl Changes {
    /// The changes of the fork's commits up to version `to`.
    fn read(fork: &Fork, to: u64) -> Result<Self> {
        let name = &fork.base.state.name;
        let log = fork.dir.join("_delta_log");
        // By path: a block of many statements adds many files.
        let mut adds: HashMap<String, deltalake::kernel::Add> = HashMap::new();
        let mut removes = Vec::new();
        for version in fork.from + 1..=to {
            let path = log.join(format!("{version:020}.json"));
            let text = std::fs::read_to_string(&path).map_err(|e| EngineError::io(&path, e))?;
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                let action: Action = serde_json::from_str(line)
                    .map_err(|e| EngineError::storage(name, format!("{}: {e}", path.display())))?;
                match action {
                    Action::Add(a) => {
                        adds.insert(a.path.clone(), a);
                    }
                    // A file written and removed within the block never reaches the table.
                    Action::Remove(r) => {
                        if adds.remove(&r.path).is_none() {
                            removes.push(r);
                        }
                    }
                    Action::CommitInfo(_) => {}
                    other => {
                        return Err(EngineError::storage(
                            name,
                            format!("a transaction block cannot carry this change: {other:?}"),
                        ))
                    }
                }
            }
        }
        Ok(Changes {
            fork_dir: fork.dir.clone(),
            adds: adds.into_values().collect(),
            removes,
        })
    }

    fn is_empty(&self) -> bool {
        self.adds.is_empty() && self.removes.is_empty()
    }

    /// Refuse the commit if a file the block removed is no longer the table's: another
    /// session's write removed it (and so changed the rows the block rewrote).
    fn check(&self, state: &TableState, table: &deltalake::DeltaTable) -> Result<()> {
        if self.removes.is_empty() {
            return Ok(());
        }
        let current: HashSet<String> = table
            .snapshot()
            .map_err(|e| EngineError::storage(&state.name, e))?
            .log_data()
            .into_iter()
            .map(|f| f.object_store_path().to_string())
            .collect();
        if self.removes.iter().all(|r| current.contains(&r.path)) {
            Ok(())
        } else {
            Err(EngineError::SerializationFailure(format!(
                "could not serialize access due to concurrent update of \"{}\"",
                state.name
            )))
        }
    }

    /// Link the added files into the table's directory and commit them, with the removes,
    /// as one version of the table.
    async fn land(
        &self,
        state: &TableState,
        table: &mut deltalake::DeltaTable,
        id: &str,
    ) -> Result<()> {
        let storage = |e: deltalake::DeltaTableError| EngineError::storage(&state.name, e);
        for a in &self.adds {
            let to = state.dir.join(&a.path);
            if !to.exists() {
                let from = self.fork_dir.join(&a.path);
                std::fs::hard_link(&from, &to).map_err(|e| EngineError::io(&from, e))?;
            }
        }
        sync_dir(&state.dir)?;
        let operation = if self.removes.is_empty() {
            DeltaOperation::Write {
                mode: SaveMode::Append,
                partition_by: None,
                predicate: None,
            }
        } else {
            DeltaOperation::Update { predicate: None }
        };
        let mut actions: Vec<Action> = self.adds.iter().cloned().map(Action::Add).collect();
        actions.extend(self.removes.iter().cloned().map(|mut r| {
            r.deletion_timestamp = Some(chrono::Utc::now().timestamp_millis());
            Action::Remove(r)
        }));
        let metadata = HashMap::from([(
            "tessera.transaction".to_string(),
            serde_json::Value::String(id.to_string()),
        )]);
        CommitBuilder::default()
            .with_actions(actions)
            .with_app_metadata(metadata)
            .build(
                Some(table.snapshot().map_err(storage)?),
                table.log_store(),
                operation,
            )
            .await
            .map_err(storage)?;
        let mut latest = table.clone();
        latest.update_state().await.map_err(storage)?;
        state.install(table, latest).await
    }
}

/// Hard-link the files of the table in `from` (but its forks) into `to`: its log up to
/// `version` (a commit that lands meanwhile, say a compaction's, is not the fork's), then
/// the data files, so each log entry linked has its data files.
fn link_tree(from: &Path, to: &Path, version: u64) -> Result<()> {
    let log = from.join("_delta_log");
    link_dir(&log, &to.join("_delta_log"), Some(version))?;
    link_dir(from, to, None)?;
    sync_dir(to)
}

/// The version a log file (`00..07.json`, `00..07.checkpoint.parquet`) belongs to.
fn log_version(name: &str) -> Option<u64> {
    name.split('.').next().and_then(|v| v.parse::<u64>().ok())
}

/// Link the files of `from` into `to`, recursively; in a log (`up_to`), only the entries
/// of versions up to it (and no `_last_checkpoint`, which may name a later one).
fn link_dir(from: &Path, to: &Path, up_to: Option<u64>) -> Result<()> {
    std::fs::create_dir_all(to).map_err(|e| EngineError::io(to, e))?;
    for entry in std::fs::read_dir(from).map_err(|e| EngineError::io(from, e))? {
        let entry = entry.map_err(|e| EngineError::io(from, e))?;
        let name = entry.file_name();
        if name == FORKS_DIR || name == "_delta_log" {
            continue;
        }
        if let Some(up_to) = up_to {
            let text = name.to_string_lossy();
            if text == "_last_checkpoint" || log_version(&text).is_some_and(|v| v > up_to) {
                continue;
            }
        }
        let (src, dst) = (entry.path(), to.join(&name));
        let kind = entry.file_type().map_err(|e| EngineError::io(&src, e))?;
        if kind.is_dir() {
            link_dir(&src, &dst, up_to)?;
        } else if !dst.exists() {
            match std::fs::hard_link(&src, &dst) {
                Ok(()) => {}
                // A temporary file renamed away meanwhile: nothing reads it.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(EngineError::io(&src, e)),
            }
        }
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| EngineError::io(dir, e))
}

/// Make the fork in `dir` end at `version`: delete its later log entries and checkpoints.
fn truncate_log(dir: &Path, version: u64) -> Result<()> {
    let log = dir.join("_delta_log");
    for entry in std::fs::read_dir(&log).map_err(|e| EngineError::io(&log, e))? {
        let entry = entry.map_err(|e| EngineError::io(&log, e))?;
        let name = entry.file_name().to_string_lossy().to_string();
        let later = log_version(&name).is_some_and(|v| v > version);
        let checkpoint_pointer = name == "_last_checkpoint"
            && std::fs::read_to_string(entry.path())
                .ok()
                .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
                .and_then(|v| v.get("version").and_then(|v| v.as_u64()))
                .is_none_or(|v| v > version);
        if later || checkpoint_pointer {
            std::fs::remove_file(entry.path()).map_err(|e| EngineError::io(&entry.path(), e))?;
        }
    }
    Ok(())
}

fn remove_fork(dir: &Path) {
    if let Err(e) = std::fs::remove_dir_all(dir) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!("cannot delete transaction fork {}: {e}", dir.display());
        }
    }
}
