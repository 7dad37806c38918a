//! Who is asking, and what they may see.
//!
//! Every statement runs on behalf of a [`Principal`]: the logged-in role (its PII
//! privilege and its purpose), or the engine itself ([`Principal::system`]) for work the
//! server does on its own account (refreshing materialised views, applying the model,
//! resolving identities). The principal travels with the statement as a task-local
//! value, set by the wire layer around each statement ([`run_as`]); code that plans a
//! query outside any such scope is treated as the least privileged principal there is,
//! so a forgotten scope masks too much rather than too little.
//!
//! What the principal may not see is masked by [`mask::GuardRelations`], an analyzer
//! rule (which also applies a session's purpose, see [`consent`]): every scan of a relation with columns classified as personal data
//! ([`classes`]) reads through masking functions when the principal lacks the PII
//! privilege. Because views are inlined and materialised views carry the classes of the
//! columns they were computed from, the rule holds on every path into the data.

pub mod audit;
pub mod classes;
pub mod consent;
pub mod erasure;
pub mod mask;
pub mod subject;
#[cfg(test)]
mod tests;
pub mod view;

use std::future::Future;

pub use classes::{Classification, PiiClass};

/// The account a statement runs on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The role name (`tessera-system` for the engine's own work).
    pub name: String,
    /// May create, change and drop anything, and sees everything.
    pub superuser: bool,
    /// Sees personal data unmasked.
    pub pii: bool,
    /// The purpose the session processes data for (`SET tessera.purpose`), if any.
    pub purpose: Option<String>,
    /// The relations it may read (superusers read everything).
    pub grants: crate::auth::Grants,
}

impl Principal {
    /// The engine acting on its own account.
    pub fn system() -> Self {
        Principal {
            name: "tessera-system".into(),
            superuser: true,
            pii: true,
            purpose: None,
            grants: Default::default(),
        }
    }

    /// Whoever runs outside any scope: no privilege at all.
    pub fn nobody() -> Self {
        Principal {
            name: "nobody".into(),
            superuser: false,
            pii: false,
            purpose: None,
            grants: Default::default(),
        }
    }
}

tokio::task_local! {
    static CURRENT: Principal;
}

/// Run `work` on behalf of `principal`.
pub async fn run_as<F: Future>(principal: Principal, work: F) -> F::Output {
    CURRENT.scope(principal, work).await
}

/// Run `work` on the engine's own account (it sees everything it computes from).
pub async fn as_system<F: Future>(work: F) -> F::Output {
    run_as(Principal::system(), work).await
}

/// The principal of the running statement ([`Principal::nobody`] outside any scope).
pub fn current() -> Principal {
    CURRENT
        .try_with(Principal::clone)
        .unwrap_or_else(|_| Principal::nobody())
}

/// The error of a read the principal may not make (SQLSTATE 42501).
pub fn denied(message: String) -> datafusion::error::DataFusionError {
    datafusion::error::DataFusionError::External(Box::new(crate::engine::EngineError::Auth(
        crate::auth::AuthError::Denied(message),
    )))
}
