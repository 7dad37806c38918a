//! Roles and authentication.
//!
//! - [`roles`] is the role store ([`Roles`], kept in `<data dir>/roles.json`, mode 0600,
//!   rewritten atomically) and what a role is allowed ([`Role::has_pii`],
//!   [`Role::may_select`], [`Role::default_purpose`]); it also serves `tessera.roles`;
//! - [`statements`] reads `CREATE ROLE`/`USER`, `ALTER ROLE`, `DROP ROLE`, `GRANT` and
//!   `REVOKE` into a [`RoleCommand`], which [`Roles::execute`] runs for a superuser
//!   (checks and changes in `apply`);
//! - [`scram`] is SCRAM-SHA-256: the verifier a role stores instead of its password, and
//!   the server side of the exchange the wire layer runs at connection start-up
//!   (`wire::startup`).
//!
//! Enforcement (masking personal data, refusing SELECT without a grant) is not done here:
//! this module only stores roles and answers questions about them.

mod apply;
pub mod roles;
pub mod scram;
pub mod statements;

pub use roles::{Bootstrap, Grants, Role, Roles};
pub use statements::{RoleCommand, RoleOptions};

/// The superuser created on first start.
pub const ADMIN_ROLE: &str = "tessera";
/// The predefined role whose members see personal data unmasked.
pub const PII_ROLE: &str = "tessera_pii";
/// The role setting naming the purpose a session works for by default.
pub const PURPOSE_SETTING: &str = "tessera.purpose";
/// The environment variable that sets the first superuser's password.
pub const ADMIN_PASSWORD_ENV: &str = "TESSERA_ADMIN_PASSWORD";
/// The file a generated first password is written to, in the data directory.
pub const ADMIN_PASSWORD_FILE: &str = "admin-password";

/// Errors of role statements, each naming the role it is about. SQLSTATE codes are
/// decided in `wire::errors`.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// A statement only superusers may run (`permission denied to create role`).
    #[error("permission denied to {0}")]
    PermissionDenied(String),
    /// A read the session may not make (`permission denied for table x`), in full.
    #[error("{0}")]
    Denied(String),
    #[error("role \"{0}\" already exists")]
    DuplicateRole(String),
    #[error("role \"{0}\" does not exist")]
    UndefinedRole(String),
    /// `tessera_pii` (and the `pg_` prefix) cannot be created, changed or dropped.
    #[error("{0}")]
    Reserved(String),
    /// The session's own role cannot be dropped or renamed.
    #[error("{0}")]
    CurrentUser(String),
    /// The change would leave no superuser able to log in.
    #[error("{0}: it is the last superuser that can log in (create another superuser first)")]
    LastSuperuser(String),
    /// `GRANT a TO b` where `b` already belongs to `a`.
    #[error("role \"{member}\" is a member of role \"{role}\"")]
    CircularMembership { role: String, member: String },
}
