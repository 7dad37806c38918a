//! The role store: `<data dir>/roles.json` and the `tessera.roles` system table.
//!
//! The file is rewritten whole (mode 0600, temporary file, fsync, rename, directory fsync:
//! [`write_file_atomically`]) and the in-memory copy replaced only once it is on disk.
//! On first start there is no file: the superuser `tessera` is created with the password
//! of `TESSERA_ADMIN_PASSWORD`, or a generated one written to `<data dir>/admin-password`
//! (mode 0600), and the predefined role `tessera_pii`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use datafusion::arrow::array::{BooleanArray, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::ObjectName;
use serde::{Deserialize, Serialize};
use tracing::info;

use super::apply::apply;
use super::scram::Verifier;
use super::statements::RoleCommand;
use super::{
    AuthError, ADMIN_PASSWORD_ENV, ADMIN_PASSWORD_FILE, ADMIN_ROLE, PII_ROLE, PURPOSE_SETTING,
};
use crate::engine::catalog::write_file_atomically;
use crate::engine::error::{EngineError, Result};
use crate::system::{register_system_table, SnapshotTable};

const FILE: &str = "roles.json";
const FORMAT_VERSION: u32 = 1;

/// The relations a role may SELECT from.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grants {
    /// `GRANT SELECT ON ALL TABLES IN SCHEMA public`: every relation of schema `public`,
    /// including those created later (PostgreSQL's grant covers existing tables only).
    #[serde(default)]
    pub all_tables: bool,
    /// Relations granted by name: `crm` for `public.crm`, `schema.name` elsewhere.
    #[serde(default)]
    pub relations: BTreeSet<String>,
}

impl Grants {
    /// Whether SELECT on `relation` is granted (`crm`, `public.crm`, `tessera.public.crm`
    /// and `tessera.events` style names).
    pub fn covers(&self, relation: &str) -> bool {
        let relation = canonical_relation(relation);
        self.relations.contains(&relation) || (self.all_tables && !relation.contains('.'))
    }
}

/// The name grants are kept under: catalog dropped, `public.` dropped.
fn canonical_relation(name: &str) -> String {
    let parts: Vec<&str> = name.split('.').collect();
    let parts = match parts.as_slice() {
        [_catalog, schema, table] => vec![*schema, *table],
        other => other.to_vec(),
    };
    match parts.as_slice() {
        [schema, table] if *schema == crate::engine::SCHEMA => table.to_string(),
        other => other.join("."),
    }
}

/// A role, as [`Roles::get`] returns it: memberships and grants include those inherited
/// from the roles it belongs to (directly or through others), as PostgreSQL's INHERIT.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Role {
    pub name: String,
    pub login: bool,
    pub superuser: bool,
    /// The roles this one belongs to (`GRANT tessera_pii TO r`).
    #[serde(default)]
    pub member_of: BTreeSet<String>,
    /// `ALTER ROLE r SET tessera.purpose = 'x'`.
    #[serde(default)]
    pub settings: BTreeMap<String, String>,
    #[serde(default)]
    pub grants: Grants,
    /// The SCRAM-SHA-256 verifier; no password, no login.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) verifier: Option<Verifier>,
}

impl Role {
    pub(super) fn new(name: &str) -> Self {
        Role {
            name: name.to_string(),
            login: false,
            superuser: false,
            member_of: BTreeSet::new(),
            settings: BTreeMap::new(),
            grants: Grants::default(),
            verifier: None,
        }
    }

    /// Whether the role sees personal data unmasked: a superuser or a member of
    /// `tessera_pii`.
    pub fn has_pii(&self) -> bool {
        self.superuser || self.member_of.contains(PII_ROLE)
    }

    /// Whether the role may SELECT from `relation`: a superuser, or granted on it or on
    /// all tables of `public`.
    pub fn may_select(&self, relation: &str) -> bool {
        self.superuser || self.grants.covers(relation)
    }

    /// The purpose its sessions work for unless they say otherwise (`tessera.purpose`).
    pub fn default_purpose(&self) -> Option<&str> {
        self.settings.get(PURPOSE_SETTING).map(String::as_str)
    }

    pub fn has_password(&self) -> bool {
        self.verifier.is_some()
    }

    /// A superuser that can log in with a password.
    fn is_usable_superuser(&self) -> bool {
        self.superuser && self.login && self.verifier.is_some()
    }
}

/// How the first superuser got its password, for the start-up message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bootstrap {
    /// From `TESSERA_ADMIN_PASSWORD`.
    FromEnv,
    /// Generated, and written to `file`.
    Generated { password: String, file: PathBuf },
}

#[derive(Debug, Serialize, Deserialize)]
struct RolesFile {
    version: u32,
    roles: Vec<Role>,
}

/// The roles of a data directory: a cheap, thread-safe handle.
#[derive(Clone)]
pub struct Roles {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    roles: RwLock<BTreeMap<String, Role>>,
    /// Serialises changes (file write and swap).
    changes: Mutex<()>,
    table: Arc<SnapshotTable>,
    /// Salts the stand-in verifier of unknown roles (see [`Verifier::impossible`]).
    secret: [u8; 32],
    bootstrap: Mutex<Option<Bootstrap>>,
}

impl std::fmt::Debug for Roles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Roles")
            .field("path", &self.inner.path)
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Roles {
    /// Load the roles of `data_dir` (creating the first superuser if there are none) and
    /// register `tessera.roles`.
    pub fn open(ctx: &SessionContext, data_dir: &Path) -> Result<Self> {
        let path = data_dir.join(FILE);
        let env_password = std::env::var(ADMIN_PASSWORD_ENV)
            .ok()
            .filter(|p| !p.is_empty());
        let (mut roles, bootstrap) = match std::fs::read(&path) {
            Ok(bytes) => {
                let file: RolesFile =
                    serde_json::from_slice(&bytes).map_err(|e| corrupt(&path, e.to_string()))?;
                if file.version != FORMAT_VERSION {
                    return Err(corrupt(&path, format!("unknown version {}", file.version)));
                }
                if env_password.is_some() {
                    info!("{ADMIN_PASSWORD_ENV} is ignored: the roles in {} are kept (change a password with ALTER ROLE ... PASSWORD)", path.display());
                }
                let roles = file
                    .roles
                    .into_iter()
                    .map(|r| (r.name.clone(), r))
                    .collect();
                (roles, None)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let (password, bootstrap) = match env_password {
                    Some(p) => (p, Bootstrap::FromEnv),
                    None => {
                        let password = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 18]>());
                        let file = data_dir.join(ADMIN_PASSWORD_FILE);
                        write_file_atomically(&file, format!("{password}\n").as_bytes(), true)?;
                        (password.clone(), Bootstrap::Generated { password, file })
                    }
                };
                let mut admin = Role::new(ADMIN_ROLE);
                admin.login = true;
                admin.superuser = true;
                admin.verifier = Some(Verifier::new(&password));
                (
                    BTreeMap::from([(ADMIN_ROLE.to_string(), admin)]),
                    Some(bootstrap),
                )
            }
            Err(e) => return Err(EngineError::io(&path, e)),
        };
        let missing_pii = !roles.contains_key(PII_ROLE);
        roles
            .entry(PII_ROLE.to_string())
            .or_insert_with(|| Role::new(PII_ROLE));
        let table = Arc::new(SnapshotTable::new(Arc::new(Schema::new(vec![
            Field::new("name", DataType::Utf8, false),
            Field::new("login", DataType::Boolean, false),
            Field::new("superuser", DataType::Boolean, false),
            Field::new("pii", DataType::Boolean, false),
            Field::new("purpose", DataType::Utf8, true),
            Field::new("member_of", DataType::Utf8, false),
            Field::new("grants", DataType::Utf8, false),
            Field::new("password", DataType::Boolean, false),
        ]))));
        register_system_table(ctx, "roles", table.clone())?;
        let store = Roles {
            inner: Arc::new(Inner {
                path,
                roles: RwLock::new(BTreeMap::new()),
                changes: Mutex::new(()),
                table,
                secret: rand::random(),
                bootstrap: Mutex::new(bootstrap),
            }),
        };
        if missing_pii || lock(&store.inner.bootstrap).is_some() {
            store.save(&roles)?;
        }
        store.publish(roles)?;
        Ok(store)
    }

    /// A snapshot of role `name`, with inherited memberships and grants.
    pub fn get(&self, name: &str) -> Option<Role> {
        effective(&self.read(), name)
    }

    /// The names of every role, in order.
    pub fn names(&self) -> Vec<String> {
        self.read().keys().cloned().collect()
    }

    /// How the first superuser got its password, once (for the start-up message).
    pub fn take_bootstrap(&self) -> Option<Bootstrap> {
        lock(&self.inner.bootstrap).take()
    }

    /// The process's secret for stand-in verifiers.
    pub(crate) fn secret(&self) -> &[u8] {
        &self.inner.secret
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Role>> {
        self.inner.roles.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Run a role statement for `actor` (`None`: the server itself, e.g. a model script).
    /// `resolve` turns a relation name of a GRANT into the name grants are kept under, or
    /// fails with 42P01 when `must_exist` and it does not exist.
    pub fn execute(
        &self,
        command: RoleCommand,
        actor: Option<&str>,
        resolve: &dyn Fn(&ObjectName, bool) -> Result<String>,
    ) -> Result<&'static str> {
        let tag = command.tag();
        let _changing = lock(&self.inner.changes);
        let current = self.read().clone();
        if let Some(actor) = actor {
            if !effective(&current, actor).is_some_and(|r| r.superuser) {
                return Err(AuthError::PermissionDenied(command.action().into()).into());
            }
        }
        let mut next = current.clone();
        let last_superuser_check = apply(&mut next, command, actor, resolve)?;
        if let Some(what) = last_superuser_check {
            let usable = |m: &BTreeMap<String, Role>| m.values().any(Role::is_usable_superuser);
            if usable(&current) && !usable(&next) {
                return Err(AuthError::LastSuperuser(what).into());
            }
        }
        self.save(&next)?;
        self.publish(next)?;
        Ok(tag)
    }

    /// A relation was renamed: its grants follow it, as in PostgreSQL.
    pub fn rename_relation(&self, old: &str, new: &str) -> Result<()> {
        let (old, new) = (canonical_relation(old), canonical_relation(new));
        self.change_grants(|g| {
            if g.relations.remove(&old) {
                g.relations.insert(new.clone());
            }
        })
    }

    /// Forget grants on relations that no longer exist (after a DROP), so a relation
    /// created later under the same name does not inherit them.
    pub fn prune_relations(&self, exists: &dyn Fn(&str) -> bool) -> Result<()> {
        self.change_grants(|g| g.relations.retain(|r| exists(r)))
    }

    fn change_grants(&self, change: impl Fn(&mut Grants)) -> Result<()> {
        let _changing = lock(&self.inner.changes);
        let current = self.read().clone();
        let mut next = current.clone();
        next.values_mut().for_each(|r| change(&mut r.grants));
        if next
            .values()
            .map(|r| &r.grants)
            .eq(current.values().map(|r| &r.grants))
        {
            return Ok(());
        }
        self.save(&next)?;
        self.publish(next)
    }

    fn save(&self, roles: &BTreeMap<String, Role>) -> Result<()> {
        let file = RolesFile {
            version: FORMAT_VERSION,
            roles: roles.values().cloned().collect(),
        };
        let bytes = serde_json::to_vec_pretty(&file)
            .map_err(|e| corrupt(&self.inner.path, e.to_string()))?;
        write_file_atomically(&self.inner.path, &bytes, true)
    }

    /// Make `roles` current, and what `tessera.roles` lists.
    fn publish(&self, roles: BTreeMap<String, Role>) -> Result<()> {
        let listed: Vec<(Role, bool)> = roles
            .values()
            .map(|r| {
                let pii = effective(&roles, &r.name).is_some_and(|e| e.has_pii());
                (r.clone(), pii)
            })
            .collect();
        let text = |f: &dyn Fn(&Role) -> Option<String>| {
            listed.iter().map(|(r, _)| f(r)).collect::<StringArray>()
        };
        let flag = |f: &dyn Fn(&(Role, bool)) -> bool| {
            listed.iter().map(|r| Some(f(r))).collect::<BooleanArray>()
        };
        let batch = RecordBatch::try_new(
            self.inner.table.schema_ref(),
            vec![
                Arc::new(text(&|r| Some(r.name.clone()))),
                Arc::new(flag(&|(r, _)| r.login)),
                Arc::new(flag(&|(r, _)| r.superuser)),
                Arc::new(flag(&|(_, pii)| *pii)),
                Arc::new(text(&|r| r.default_purpose().map(str::to_string))),
                Arc::new(text(&|r| Some(join(r.member_of.iter().cloned())))),
                Arc::new(text(&|r| {
                    let all = r
                        .grants
                        .all_tables
                        .then(|| "ALL TABLES IN SCHEMA public".to_string());
                    Some(join(
                        all.into_iter().chain(r.grants.relations.iter().cloned()),
                    ))
                })),
                Arc::new(flag(&|(r, _)| r.has_password())),
            ],
        )
        .map_err(|e| EngineError::storage("roles", e))?;
        self.inner.table.set(batch);
        *self.inner.roles.write().unwrap_or_else(|p| p.into_inner()) = roles;
        Ok(())
    }
}

fn join(items: impl Iterator<Item = String>) -> String {
    items.collect::<Vec<_>>().join(", ")
}

fn corrupt(path: &Path, reason: String) -> EngineError {
    EngineError::CorruptCatalog {
        path: path.to_path_buf(),
        reason,
    }
}

/// Role `name` with the memberships and grants of every role it belongs to.
pub(super) fn effective(roles: &BTreeMap<String, Role>, name: &str) -> Option<Role> {
    let mut role = roles.get(name)?.clone();
    let mut pending: Vec<String> = role.member_of.iter().cloned().collect();
    while let Some(parent) = pending.pop() {
        let Some(p) = roles.get(&parent) else {
            continue;
        };
        role.grants.all_tables |= p.grants.all_tables;
        role.grants
            .relations
            .extend(p.grants.relations.iter().cloned());
        for grand in &p.member_of {
            if role.member_of.insert(grand.clone()) {
                pending.push(grand.clone());
            }
        }
    }
    Some(role)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::statements::classify;
    use crate::engine::sql::{relation_name, Command};

    fn open(dir: &Path) -> Roles {
        let ctx = SessionContext::new_with_config(
            datafusion::prelude::SessionConfig::new()
                .with_default_catalog_and_schema(crate::engine::DATABASE, "public"),
        );
        crate::system::SystemTables::register(&ctx).expect("system schema");
        Roles::open(&ctx, dir).expect("open")
    }

    fn run(roles: &Roles, actor: Option<&str>, sql: &str) -> Result<&'static str> {
        let Some(Ok(Command::Role(c))) = classify(sql) else {
            panic!("not a role statement: {sql}");
        };
        roles.execute(*c, actor, &|n, _| Ok(relation_name(n)))
    }

    #[test]
    fn first_start_creates_the_admin_and_later_starts_keep_roles() {
        let dir = tempfile::tempdir().expect("tempdir");
        let roles = open(dir.path());
        let Some(Bootstrap::Generated { password, file }) = roles.take_bootstrap() else {
            panic!("expected a generated password");
        };
        assert_eq!(
            std::fs::read_to_string(&file).expect("file").trim(),
            password
        );
        let admin = roles.get(ADMIN_ROLE).expect("admin");
        assert!(admin.superuser && admin.login && admin.has_pii() && admin.may_select("x"));
        assert!(roles.get(PII_ROLE).is_some_and(|r| !r.login));
        run(
            &roles,
            Some(ADMIN_ROLE),
            "CREATE USER ann PASSWORD 'secret-pw'",
        )
        .expect("create");
        run(&roles, None, "GRANT SELECT ON crm TO ann").expect("grant");
        run(&roles, None, "GRANT tessera_pii TO ann").expect("member");
        run(
            &roles,
            None,
            "ALTER ROLE ann SET tessera.purpose = 'email_marketing'",
        )
        .expect("set");
        let on_disk = std::fs::read_to_string(dir.path().join(FILE)).expect("roles.json");
        assert!(!on_disk.contains("secret-pw") && !on_disk.contains(&password));
        let again = open(dir.path());
        assert_eq!(again.take_bootstrap(), None);
        let ann = again.get("ann").expect("ann");
        assert!(ann.login && !ann.superuser && ann.has_pii());
        assert!(ann.may_select("crm") && ann.may_select("public.crm") && !ann.may_select("web"));
        assert_eq!(ann.default_purpose(), Some("email_marketing"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            for f in [FILE, ADMIN_PASSWORD_FILE] {
                let mode = std::fs::metadata(dir.path().join(f))
                    .expect("meta")
                    .permissions();
                assert_eq!(mode.mode() & 0o777, 0o600, "{f}");
            }
        }
    }

    #[test]
    fn only_superusers_change_roles_and_the_last_one_stays() {
        let dir = tempfile::tempdir().expect("tempdir");
        let roles = open(dir.path());
        run(&roles, None, "CREATE USER bob PASSWORD 'pw'").expect("create");
        let denied = run(&roles, Some("bob"), "CREATE ROLE x").expect_err("denied");
        assert_eq!(denied.to_string(), "permission denied to create role");
        let e = run(&roles, None, "CREATE ROLE bob").expect_err("duplicate");
        assert_eq!(e.to_string(), "role \"bob\" already exists");
        let e = run(&roles, None, "DROP ROLE nobody").expect_err("undefined");
        assert_eq!(e.to_string(), "role \"nobody\" does not exist");
        run(&roles, None, "DROP ROLE IF EXISTS nobody").expect("if exists");
        let e = run(&roles, Some(ADMIN_ROLE), "DROP ROLE tessera").expect_err("self");
        assert!(e.to_string().contains("current user"), "{e}");
        let e = run(&roles, None, "ALTER ROLE tessera NOSUPERUSER").expect_err("last");
        assert!(e.to_string().contains("last superuser"), "{e}");
        run(&roles, None, "ALTER ROLE bob SUPERUSER").expect("second superuser");
        run(&roles, Some("bob"), "ALTER ROLE tessera NOSUPERUSER").expect("now allowed");
        assert!(run(&roles, None, "DROP ROLE tessera_pii").is_err());
        run(&roles, None, "CREATE ROLE team").expect("team");
        run(
            &roles,
            None,
            "GRANT SELECT ON ALL TABLES IN SCHEMA public TO team",
        )
        .expect("g");
        run(&roles, None, "GRANT team TO tessera").expect("member");
        let e = run(&roles, None, "GRANT tessera TO team").expect_err("cycle");
        assert!(e.to_string().contains("is a member of"), "{e}");
        let t = roles.get("tessera").expect("tessera");
        assert!(t.may_select("anything") && !t.may_select("tessera.events"));
        run(&roles, None, "ALTER ROLE team RENAME TO crew").expect("rename");
        assert!(roles
            .get("tessera")
            .is_some_and(|r| r.member_of.contains("crew")));
    }
}
