//! SQLSTATE codes: decided here and nowhere else.
//!
//! Every error that reaches a client passes through [`to_pg`], which finds the engine or
//! DataFusion error inside (through `Context`, `External` and pgwire's `ApiError`
//! wrappers) and picks the code PostgreSQL would send.

use datafusion::arrow::error::ArrowError;
use datafusion::error::DataFusionError;
use datafusion::sql::sqlparser::parser::ParserError;
use pgwire::error::{ErrorInfo, PgWireError};

use crate::auth::AuthError;
use crate::engine::EngineError;

/// Turn any error into a PostgreSQL error response. `query` is the full query string and
/// `offset` where the failing statement starts in it (for the position of syntax errors).
pub fn to_pg(err: PgWireError, query: &str, offset: usize) -> PgWireError {
    match err {
        PgWireError::ApiError(e) => {
            let (code, message) = classify_boxed(e.as_ref());
            let mut info = ErrorInfo::new("ERROR".into(), code.into(), message);
            info.hint = engine_error_in(e.as_ref()).and_then(EngineError::hint);
            if code == "42601" {
                info.position =
                    syntax_position(&info.message, query, offset).map(|p| p.to_string());
            }
            PgWireError::UserError(Box::new(info))
        }
        // datafusion-postgres reports statements in a failed transaction as 25P01;
        // PostgreSQL (and clients matching on it) use in_failed_sql_transaction.
        PgWireError::UserError(mut info)
            if info.code == "25P01" && info.message.contains("aborted") =>
        {
            info.code = "25P02".into();
            PgWireError::UserError(info)
        }
        other => other,
    }
}

/// The SQLSTATE `err` reaches the client with.
pub fn sqlstate(err: &PgWireError) -> String {
    match err {
        PgWireError::ApiError(e) => classify_boxed(e.as_ref()).0.to_string(),
        PgWireError::UserError(i) if i.code == "25P01" => "25P02".into(),
        PgWireError::UserError(i) => i.code.clone(),
        _ => "XX000".into(),
    }
}

/// Whether a query path failed in the parser (rather than in planning or execution).
pub fn is_syntax_error(e: &PgWireError) -> bool {
    match e {
        PgWireError::ApiError(e) => classify_boxed(e.as_ref()).0 == "42601",
        PgWireError::UserError(i) => i.code == "42601",
        _ => false,
    }
}

pub fn engine_error(e: EngineError) -> PgWireError {
    PgWireError::ApiError(Box::new(e))
}

/// The engine error inside `e`, through DataFusion's wrappers.
fn engine_error_in<'a>(
    e: &'a (dyn std::error::Error + Send + Sync + 'static),
) -> Option<&'a EngineError> {
    if let Some(e) = e.downcast_ref::<EngineError>() {
        return match e {
            EngineError::DataFusion(d) => engine_error_in(d),
            other => Some(other),
        };
    }
    match e.downcast_ref::<DataFusionError>()? {
        DataFusionError::Context(_, inner) | DataFusionError::Diagnostic(_, inner) => {
            engine_error_in(inner.as_ref())
        }
        DataFusionError::Shared(inner) => engine_error_in(inner.as_ref()),
        DataFusionError::External(inner) => engine_error_in(inner.as_ref()),
        _ => None,
    }
}

fn classify_boxed(e: &(dyn std::error::Error + Send + Sync + 'static)) -> (&'static str, String) {
    if let Some(e) = e.downcast_ref::<EngineError>() {
        return classify_engine(e);
    }
    if let Some(e) = e.downcast_ref::<DataFusionError>() {
        return classify_df(e);
    }
    if e.downcast_ref::<ParserError>().is_some() {
        return ("42601", e.to_string());
    }
    ("XX000", e.to_string())
}

fn classify_engine(e: &EngineError) -> (&'static str, String) {
    let code = match e {
        EngineError::UndefinedRelation(_) => "42P01",
        EngineError::DuplicateRelation(_) => "42P07",
        EngineError::DuplicateObject { .. } => "42710",
        EngineError::UndefinedObject { .. } => "42704",
        EngineError::UndefinedColumn { .. } => "42703",
        EngineError::BadCall(_) => "42883",
        EngineError::BadArgument(_) => "42804",
        EngineError::WrongObjectType { .. }
        | EngineError::ReadOnlyMaterializedView(_)
        | EngineError::ReadOnlySystemTable(_) => "42809",
        EngineError::NotPopulated(_) => "55000",
        EngineError::InvalidParameter(_) => "22023",
        EngineError::Refresh { source, .. } => classify_engine(source).0,
        EngineError::DependentObjects { .. } => "2BP01",
        EngineError::Syntax(_) => "42601",
        EngineError::SerializationFailure(_) => "40001",
        EngineError::NoSavepoint(_) => "3B001",
        EngineError::LocationNotAllowed { .. } => "42501",
        EngineError::NotSupported(_) => "0A000",
        EngineError::BadCopyData(m) if m.starts_with("invalid input syntax") => "22P02",
        EngineError::BadCopyData(m) if m.contains("does not exist") => "42703",
        EngineError::BadCopyData(_) => "22P04",
        EngineError::ValueTooLong { .. } => "22001",
        EngineError::CorruptCatalog { .. }
        | EngineError::Io { .. }
        | EngineError::Storage { .. } => "58030",
        EngineError::Auth(a) => match a {
            AuthError::PermissionDenied(_) | AuthError::Denied(_) => "42501",
            AuthError::DuplicateRole(_) => "42710",
            AuthError::UndefinedRole(_) => "42704",
            AuthError::Reserved(_) => "42939",
            AuthError::CurrentUser(_) => "55006",
            AuthError::LastSuperuser(_) => "55000",
            AuthError::CircularMembership { .. } => "0LP01",
        },
        EngineError::DataFusion(d) => return classify_df(d),
        EngineError::Source { source, .. } => classify_df(source).0,
    };
    let message = match e {
        EngineError::DependentObjects { kind, name, dependents } => format!(
            "cannot drop {kind} \"{name}\" because other objects depend on it ({} depends on {kind} {name}); use DROP ... CASCADE to drop the dependent objects too",
            dependents.join(", ")
        ),
        other => other.to_string(),
    };
    (code, message)
}

fn classify_df(e: &DataFusionError) -> (&'static str, String) {
    let message = e.to_string();
    let code = match e {
        DataFusionError::Context(context, inner) => {
            // The context names the object (`source "crm" (/data/crm.csv)`): keep it.
            let (code, message) = classify_df(inner);
            return (code, format!("{context}: {message}"));
        }
        DataFusionError::Diagnostic(_, inner) => return classify_df(inner),
        DataFusionError::Shared(inner) => return classify_df(inner),
        DataFusionError::External(inner) => {
            let (code, msg) = classify_boxed(inner.as_ref());
            return (code, msg);
        }
        DataFusionError::SQL(p, _) => match p.as_ref() {
            ParserError::RecursionLimitExceeded => "54001",
            _ => "42601",
        },
        DataFusionError::SchemaError(s, _) => {
            let m = s.to_string();
            if m.contains("No field named") || m.contains("not found") {
                "42703"
            } else if m.contains("ambiguous") {
                "42702"
            } else if m.contains("duplicate") || m.contains("Duplicate") {
                "42701"
            } else {
                "42P10"
            }
        }
        DataFusionError::Plan(m) => {
            if let Some(name) = missing_table(m) {
                return ("42P01", format!("relation \"{name}\" does not exist"));
            }
            if m.contains("not found") && (m.contains("table") || m.contains("Table")) {
                "42P01"
            } else if m.contains("already exists") {
                "42P07"
            } else if m.contains("No function") || m.contains("Invalid function") {
                "42883"
            } else {
                "42804"
            }
        }
        DataFusionError::NotImplemented(_) => "0A000",
        DataFusionError::ResourcesExhausted(m) => return ("53200", format!("out of memory: {m}")),
        DataFusionError::ArrowError(a, _) => match a.as_ref() {
            ArrowError::DivideByZero => "22012",
            ArrowError::InvalidArgumentError(m) if m.contains("non-nullable") => "23502",
            ArrowError::CastError(_) | ArrowError::ParseError(_) => "22P02",
            ArrowError::ComputeError(_) | ArrowError::ArithmeticOverflow(_) => "22003",
            ArrowError::CsvError(_) | ArrowError::JsonError(_) => "22P04",
            ArrowError::IoError(..) => "58030",
            _ => "XX000",
        },
        DataFusionError::IoError(_) | DataFusionError::ObjectStore(_) => "58030",
        DataFusionError::ParquetError(_) => "22P04",
        DataFusionError::Execution(m) if m.contains("unrecognized configuration parameter") => {
            "42704"
        }
        DataFusionError::Execution(m)
            if m.contains("Error parsing") || m.contains("Cannot cast") =>
        {
            "22P02"
        }
        DataFusionError::Execution(_) => "22000",
        DataFusionError::ExecutionJoin(_)
        | DataFusionError::Internal(_)
        | DataFusionError::Substrait(_) => "XX000",
        DataFusionError::Configuration(_) => "22023",
        DataFusionError::Collection(errs) => {
            return errs.first().map_or(("XX000", message), classify_df)
        }
        _ => "XX000",
    };
    (code, message)
}

/// The relation named in DataFusion's "table 'db.schema.name' not found".
fn missing_table(m: &str) -> Option<&str> {
    let rest = m.split("table '").nth(1)?;
    let (qualified, tail) = rest.split_once('\'')?;
    tail.trim_start()
        .starts_with("not found")
        .then(|| qualified.rsplit('.').next().unwrap_or(qualified))
}

/// PostgreSQL reports a syntax error's position as a 1-based character index into the
/// whole query string; sqlparser reports `Line: L, Column: C` within the statement.
fn syntax_position(message: &str, query: &str, offset: usize) -> Option<usize> {
    let stmt = query.get(offset..)?;
    if message.contains("found: EOF") {
        // PostgreSQL points just past the end of the statement.
        return Some(query[..offset].chars().count() + stmt.trim_end().chars().count() + 1);
    }
    let at = message.rfind("Line: ")?;
    let rest = &message[at + 6..];
    let (line, rest) = rest.split_once(", Column: ")?;
    let line: usize = line.trim().parse().ok()?;
    let col: usize = rest
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect::<String>()
        .parse()
        .ok()?;
    let mut chars_before = query[..offset].chars().count();
    for (i, l) in stmt.split('\n').enumerate() {
        if i + 1 == line {
            return Some(chars_before + col.min(l.chars().count() + 1));
        }
        chars_before += l.chars().count() + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code_of(e: PgWireError) -> (String, Option<String>) {
        match e {
            PgWireError::UserError(i) => (i.code, i.position),
            other => panic!("not a user error: {other:?}"),
        }
    }

    #[test]
    fn syntax_error_position_counts_from_the_whole_query() {
        let query = "SELECT 1; SELEC 2";
        let err = DataFusionError::SQL(
            Box::new(ParserError::ParserError(
                "Expected: an SQL statement, found: SELEC at Line: 1, Column: 1".into(),
            )),
            None,
        );
        let (code, pos) = code_of(to_pg(PgWireError::ApiError(Box::new(err)), query, 10));
        assert_eq!(code, "42601");
        assert_eq!(pos.as_deref(), Some("11"));
    }

    #[test]
    fn engine_errors_get_postgres_codes() {
        let cases = [
            (EngineError::UndefinedRelation("x".into()), "42P01"),
            (EngineError::DuplicateRelation("x".into()), "42P07"),
            (
                EngineError::DependentObjects {
                    kind: "table",
                    name: "t".into(),
                    dependents: vec!["view v".into()],
                },
                "2BP01",
            ),
            (
                EngineError::BadCopyData("missing data for column \"b\" (COPY t, line 2)".into()),
                "22P04",
            ),
        ];
        for (e, want) in cases {
            assert_eq!(code_of(to_pg(engine_error(e), "", 0)).0, want);
        }
        let wrapped = DataFusionError::Context(
            "ctx".into(),
            Box::new(DataFusionError::Plan(
                "table 'tessera.public.nope' not found".into(),
            )),
        );
        assert_eq!(
            code_of(to_pg(PgWireError::ApiError(Box::new(wrapped)), "", 0)).0,
            "42P01"
        );
    }
}
