//! The principal each statement of a connection runs as (see `crate::access`), and the
//! session's purpose.

use pgwire::api::ClientInfo;

use crate::access::Principal;
use crate::auth::AuthError;
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{Set, SetExpr, Statement};

use crate::auth::PURPOSE_SETTING;
use crate::engine::sql::{parse_one, Command, CopyCommand, CopyDirection};
use crate::engine::{Engine, EngineError};

/// The principal of the connection's logged-in role, as the role is now (a role dropped
/// while connected has no privilege left).
pub fn principal<C: ClientInfo + ?Sized>(engine: &Engine, client: &C) -> Principal {
    let Some(role) = client
        .metadata()
        .get(pgwire::api::METADATA_USER)
        .and_then(|name| engine.roles().get(name))
    else {
        return Principal::nobody();
    };
    let purpose = match client.metadata().get(PURPOSE_SETTING) {
        // Set in the session; empty is "no purpose".
        Some(p) => (!p.is_empty()).then(|| p.clone()),
        None => role.default_purpose().map(str::to_string),
    };
    Principal {
        name: role.name.clone(),
        superuser: role.superuser,
        pii: role.has_pii(),
        purpose,
        grants: role.grants.clone(),
    }
}

/// `SET tessera.purpose = 'p'` (`Some`) or `RESET tessera.purpose` (`None`, back to the
/// role's purpose). A role given a purpose with `ALTER ROLE ... SET tessera.purpose` is
/// bound to it: only a superuser may switch to another one.
pub fn set_purpose<C: ClientInfo + ?Sized>(
    engine: &Engine,
    client: &mut C,
    purpose: Option<String>,
) -> Result<(), EngineError> {
    let role = client
        .metadata()
        .get(pgwire::api::METADATA_USER)
        .and_then(|name| engine.roles().get(name));
    let Some(p) = purpose else {
        client.metadata_mut().remove(PURPOSE_SETTING);
        return Ok(());
    };
    if let Some(role) = role.filter(|r| !r.superuser) {
        if let Some(bound) = role.default_purpose().filter(|b| *b != p) {
            return Err(EngineError::Auth(AuthError::Denied(format!(
                "permission denied to set {PURPOSE_SETTING}: role \"{}\" is bound to \
                 purpose \"{bound}\"",
                role.name
            ))));
        }
    }
    client.metadata_mut().insert(PURPOSE_SETTING.into(), p);
    Ok(())
}

/// Refuse a statement a non-superuser may not run: anything that changes data or
/// definitions, and settings that are shared by every session (DataFusion's own). What
/// it may read is checked when the statement is planned (`crate::access`).
pub fn check_statement(
    principal: &Principal,
    sql: &str,
    command: Option<&Command>,
) -> Result<(), EngineError> {
    if principal.superuser {
        return Ok(());
    }
    let allowed = match command {
        Some(c) => matches!(
            c,
            Command::Copy(CopyCommand {
                direction: CopyDirection::ToStdout { .. },
                ..
            }) | Command::Show(_)
                | Command::SetPurpose(_)
                | Command::Discard
                | Command::Accept(_)
                | Command::Transaction(_)
                // Role statements check their own privilege, with PostgreSQL's messages.
                | Command::Role(_)
        ),
        None => match parse_one(sql) {
            Ok(DFStatement::Statement(s)) => read_only(&s),
            Ok(DFStatement::Explain(_)) => true,
            Ok(_) => false,
            // What our parser cannot read goes to datafusion-postgres' compatibility
            // parser: only queries, whose reads the planner checks.
            Err(_) => {
                let first = sql
                    .trim_start()
                    .split(|c: char| c.is_whitespace() || c == '(')
                    .next()
                    .unwrap_or("")
                    .to_ascii_lowercase();
                sql.trim_start().starts_with('(')
                    || matches!(
                        first.as_str(),
                        "select" | "with" | "show" | "values" | "table"
                    )
            }
        },
    };
    if allowed {
        return Ok(());
    }
    let what = sql.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
    Err(EngineError::Auth(AuthError::Denied(format!(
        "permission denied to run {what}: role \"{}\" may only read (changes to data, \
         definitions and server settings are for superusers)",
        principal.name
    ))))
}

/// Session settings any role may change (they live with the connection).
const SESSION_SETTINGS: &[&str] = &[
    "statement_timeout",
    "datestyle",
    "bytea_output",
    "intervalstyle",
    "application_name",
    "extra_float_digits",
    "search_path",
    "client_encoding",
    "timezone",
    "time zone",
    "client_min_messages",
];

fn read_only(s: &Statement) -> bool {
    match s {
        // `SELECT ... INTO t` creates a table.
        Statement::Query(q) => !matches!(&*q.body, SetExpr::Select(s) if s.into.is_some()),
        Statement::Explain { .. }
        | Statement::ExplainTable { .. }
        | Statement::ShowVariable { .. }
        | Statement::ShowVariables { .. }
        | Statement::ShowTables { .. }
        | Statement::ShowColumns { .. }
        | Statement::StartTransaction { .. }
        | Statement::Commit { .. }
        | Statement::Rollback { .. }
        | Statement::Declare { .. }
        | Statement::Fetch { .. }
        | Statement::Close { .. }
        | Statement::Deallocate { .. }
        | Statement::Discard { .. } => true,
        Statement::Set(set) => match set {
            Set::SingleAssignment { variable, .. } => {
                let name = variable.to_string().to_lowercase();
                SESSION_SETTINGS.contains(&name.as_str())
            }
            Set::SetTimeZone { .. } | Set::SetNames { .. } | Set::SetTransaction { .. } => true,
            _ => false,
        },
        _ => false,
    }
}
