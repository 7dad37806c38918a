//! Reading statements: splitting a query string, and sorting out which statements the
//! engine executes itself ([`Command`]) and which go to DataFusion as they are.
//!
//! DataFusion plans queries, `SET`/`SHOW` and transactions well; what it cannot do is
//! persist DDL, store tables durably, or speak `COPY`. Those statements become
//! [`Command`]s.

use datafusion::sql::parser::{CreateExternalTable, DFParserBuilder, Statement as DFStatement};
use datafusion::sql::sqlparser::ast::{
    self, AlterTableOperation, CopyLegacyCsvOption, CopyLegacyOption, CopyOption, CopySource,
    CopyTarget, Ident, ObjectName, ObjectType, RenameTableNameKind, Statement,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;

use super::error::{EngineError, Result};
use crate::auth::PURPOSE_SETTING;

/// A statement about the transaction block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransactionStatement {
    /// `BEGIN`, `START TRANSACTION`.
    Begin,
    /// `COMMIT`, `END`.
    Commit,
    /// `ROLLBACK`.
    Rollback,
    /// `SAVEPOINT name`.
    Savepoint(String),
    /// `RELEASE [SAVEPOINT] name`.
    Release(String),
    /// `ROLLBACK TO [SAVEPOINT] name`.
    RollbackTo(String),
}

/// A statement the engine executes itself.
#[derive(Debug, Clone)]
pub enum Command {
    CreateExternal(Box<CreateExternalTable>),
    CreateTable(Box<Statement>),
    CreateView(Box<Statement>),
    CreateMaterializedView(Box<super::matview::CreateMaterializedView>),
    /// `REFRESH MATERIALIZED VIEW [CONCURRENTLY] name [WITH [NO] DATA]`.
    RefreshMaterializedView {
        name: String,
        with_data: bool,
    },
    Drop {
        kind: ObjectType,
        names: Vec<String>,
        if_exists: bool,
        cascade: bool,
    },
    Rename {
        kind: ObjectType,
        name: String,
        new_name: String,
        if_exists: bool,
    },
    /// INSERT, UPDATE, DELETE, TRUNCATE: planned by DataFusion, answered with a row count.
    Dml(Box<Statement>),
    Copy(CopyCommand),
    /// `COMMENT ON COLUMN relation.column IS 'text' | NULL` (a `pii...` comment classifies
    /// the column as personal data).
    CommentOnColumn {
        relation: String,
        column: String,
        comment: Option<String>,
    },
    Discard,
    /// `SET tessera.purpose = 'purpose'` (`Some`), `RESET tessera.purpose` (`None`): the
    /// purpose the session processes personal data for (see `crate::access`).
    SetPurpose(Option<String>),
    /// `SHOW name`: answered from the session's settings by the wire layer.
    Show(String),
    /// Statements accepted for client compatibility that change nothing here, answered
    /// with their tag: `DEALLOCATE [ALL]`.
    Accept(&'static str),
    /// `BEGIN`, `COMMIT`, `ROLLBACK` and savepoints (see `storage::txn`).
    Transaction(TransactionStatement),
    /// `CREATE WRITE KEY name FOR SOURCE 'source'`: answers one row with the new key
    /// (see `crate::collect`).
    CreateWriteKey {
        name: String,
        source: String,
    },
    /// `DROP WRITE KEY [IF EXISTS] name`.
    DropWriteKey {
        name: String,
        if_exists: bool,
    },
    /// `CREATE DESTINATION name FOR SEGMENT segment URL 'url' PURPOSE 'purpose'`: a
    /// webhook the segment's changes are sent to (see `crate::activate`); answers one
    /// row with the signing secret.
    CreateDestination(crate::activate::NewDestination),
    /// `DROP DESTINATION [IF EXISTS] name`.
    DropDestination {
        name: String,
        if_exists: bool,
    },
    /// Role statements: `CREATE ROLE`, `ALTER ROLE`, `GRANT`, ... (see `crate::auth`).
    Role(Box<crate::auth::RoleCommand>),
    /// `CALL forget_subject('id_type', 'id_value')`: erase a person (see
    /// `crate::engine::erasure`); answers one row, the receipt.
    ForgetSubject {
        id_type: String,
        id_value: String,
    },
}

/// The erasure procedure's name.
pub const FORGET_SUBJECT: &str = "forget_subject";

/// The arguments of a procedure call that takes string literals only.
fn string_args(f: &ast::Function) -> Result<Vec<String>> {
    let ast::FunctionArguments::List(list) = &f.args else {
        return Ok(Vec::new());
    };
    list.args
        .iter()
        .map(|a| match a {
            ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(ast::Expr::Value(v))) => {
                match &v.value {
                    ast::Value::SingleQuotedString(s)
                    | ast::Value::EscapedStringLiteral(s)
                    | ast::Value::DollarQuotedString(ast::DollarQuotedString {
                        value: s, ..
                    }) => Ok(s.clone()),
                    other => Err(EngineError::BadArgument(format!(
                        "{} takes text literals, not {other}",
                        f.name
                    ))),
                }
            }
            other => Err(EngineError::BadArgument(format!(
                "{} takes text literals, not {other}",
                f.name
            ))),
        })
        .collect()
}

/// `COPY table [(columns)] FROM STDIN` or `COPY {table | (query)} TO STDOUT`.
#[derive(Debug, Clone)]
pub struct CopyCommand {
    pub direction: CopyDirection,
    pub format: CopyFormat,
}

#[derive(Debug, Clone)]
pub enum CopyDirection {
    FromStdin {
        table: String,
        columns: Vec<String>,
    },
    /// The query whose rows are sent (`SELECT * FROM t` for a table).
    ToStdout {
        query: String,
    },
}

/// Text or CSV framing options, with PostgreSQL's defaults per format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyFormat {
    pub csv: bool,
    /// PostgreSQL's binary COPY format (FROM STDIN only).
    pub binary: bool,
    pub delimiter: u8,
    pub null: String,
    pub header: bool,
    pub quote: u8,
    pub escape: u8,
}

impl CopyFormat {
    fn text() -> Self {
        CopyFormat {
            csv: false,
            binary: false,
            delimiter: b'\t',
            null: "\\N".into(),
            header: false,
            quote: b'"',
            escape: b'"',
        }
    }

    fn csv() -> Self {
        CopyFormat {
            csv: true,
            delimiter: b',',
            null: String::new(),
            ..Self::text()
        }
    }
}

/// Split a query string into its statements, keeping each one's text as written.
/// Semicolons inside quotes, dollar quotes and comments do not split.
pub fn split_statements(sql: &str) -> Vec<&str> {
    let bytes = sql.as_bytes();
    let mut out = Vec::new();
    let (mut start, mut i) = (0, 0);
    while i < bytes.len() {
        match bytes[i] {
            b'\'' | b'"' => {
                let q = bytes[i];
                i += 1;
                while i < bytes.len() {
                    if bytes[i] == q {
                        if bytes.get(i + 1) == Some(&q) {
                            i += 2;
                            continue;
                        }
                        break;
                    }
                    i += 1;
                }
            }
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i + 1 < bytes.len() && !(bytes[i] == b'*' && bytes[i + 1] == b'/') {
                    i += 1;
                }
                i += 1;
            }
            b'$' => {
                // $tag$ ... $tag$
                let tag_end = sql[i + 1..]
                    .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                    .map(|n| i + 1 + n);
                if let Some(e) = tag_end.filter(|&e| bytes.get(e) == Some(&b'$')) {
                    let tag = &sql[i..=e];
                    match sql[e + 1..].find(tag) {
                        Some(n) => i = e + 1 + n + tag.len() - 1,
                        None => i = bytes.len(),
                    }
                }
            }
            b';' => {
                out.push(&sql[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    out.push(&sql[start.min(sql.len())..]);
    out.into_iter()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect()
}

/// Parse one statement with DataFusion's parser (PostgreSQL dialect).
pub fn parse_one(sql: &str) -> Result<DFStatement> {
    let dialect = PostgreSqlDialect {};
    let mut stmts = DFParserBuilder::new(sql)
        .with_dialect(&dialect)
        .build()
        .and_then(|mut p| p.parse_statements())
        .map_err(|e| EngineError::Syntax(e.to_string()))?;
    match (stmts.pop_front(), stmts.is_empty()) {
        (Some(s), true) => Ok(s),
        (None, _) => Err(EngineError::Syntax("empty statement".into())),
        (Some(_), false) => Err(EngineError::Syntax(
            "expected one statement, got several".into(),
        )),
    }
}

/// The relation name an object name refers to: its last part, lower-cased unless quoted.
pub fn relation_name(name: &ObjectName) -> String {
    name.0
        .last()
        .and_then(|p| p.as_ident())
        .map(ident_name)
        .unwrap_or_default()
}

/// The declared length of each `varchar(n)`/`char(n)` column among `columns` (by
/// position). `char` alone is `char(1)`; `varchar` without a length has none.
pub fn text_limits(columns: &[ast::ColumnDef]) -> Vec<(usize, crate::storage::TextLimit)> {
    use ast::{CharacterLength, DataType as T};
    columns
        .iter()
        .enumerate()
        .filter_map(|(i, c)| {
            let (length, blank_padded) = match &c.data_type {
                T::Varchar(n) | T::CharacterVarying(n) | T::CharVarying(n) | T::Nvarchar(n) => {
                    (n.as_ref()?, false)
                }
                T::Char(n) | T::Character(n) => match n {
                    Some(n) => (n, true),
                    None => (
                        &CharacterLength::IntegerLength {
                            length: 1,
                            unit: None,
                        },
                        true,
                    ),
                },
                _ => return None,
            };
            let CharacterLength::IntegerLength { length, .. } = length else {
                return None;
            };
            let length = u32::try_from(*length).ok()?;
            Some((
                i,
                crate::storage::TextLimit {
                    length,
                    blank_padded,
                },
            ))
        })
        .collect()
}

pub fn ident_name(i: &Ident) -> String {
    if i.quote_style.is_some() {
        i.value.clone()
    } else {
        i.value.to_lowercase()
    }
}

/// Decide whether `sql` is a [`Command`]; `Ok(None)` means DataFusion runs it as it is.
/// `COPY` is recognised before parsing, as DataFusion's parser only knows `COPY ... TO file`.
pub fn classify(sql: &str) -> Result<Option<Command>> {
    let first_word = sql
        .split(|c: char| c.is_whitespace() || c == '(')
        .next()
        .unwrap_or("");
    if first_word.eq_ignore_ascii_case("copy") {
        return parse_copy(sql).map(|c| Some(Command::Copy(c)));
    }
    if let Some(command) = super::matview::parse::classify(sql) {
        return command.map(Some);
    }
    if let Some(command) = crate::collect::statements::classify(sql) {
        return command.map(Some);
    }
    if let Some(command) = crate::auth::statements::classify(sql) {
        return command.map(Some);
    }
    let stmt = match parse_one(sql)? {
        DFStatement::CreateExternalTable(c) => {
            return Ok(Some(Command::CreateExternal(Box::new(c))))
        }
        DFStatement::Statement(s) => *s,
        DFStatement::Reset(datafusion::sql::parser::ResetStatement::Variable(ref name))
            if is_purpose(name) =>
        {
            return Ok(Some(Command::SetPurpose(None)))
        }
        _ => return Ok(None),
    };
    Ok(Some(match stmt {
        Statement::CreateTable(ref c) if !c.external => Command::CreateTable(Box::new(stmt)),
        Statement::CreateView(ref v) if !v.materialized => Command::CreateView(Box::new(stmt)),
        Statement::Drop {
            object_type:
                kind @ (ObjectType::Table | ObjectType::View | ObjectType::MaterializedView),
            if_exists,
            names,
            cascade,
            ..
        } => Command::Drop {
            kind,
            names: names.iter().map(relation_name).collect(),
            if_exists,
            cascade,
        },
        Statement::AlterTable(ref a) => {
            let kind = match a.table_type {
                None => ObjectType::Table,
                Some(_) => return Err(EngineError::NotSupported(format!("{stmt}"))),
            };
            match a.operations.as_slice() {
                [AlterTableOperation::RenameTable { table_name }] => {
                    let (RenameTableNameKind::As(n) | RenameTableNameKind::To(n)) = table_name;
                    Command::Rename {
                        kind,
                        name: relation_name(&a.name),
                        new_name: relation_name(n),
                        if_exists: a.if_exists,
                    }
                }
                _ => return Err(EngineError::NotSupported(format!("{stmt}"))),
            }
        }
        Statement::Insert(_)
        | Statement::Update(_)
        | Statement::Delete(_)
        | Statement::Truncate(_) => Command::Dml(Box::new(stmt)),
        Statement::Call(ref f)
            if f.name
                .0
                .last()
                .and_then(|p| p.as_ident())
                .map(ident_name)
                .as_deref()
                == Some(FORGET_SUBJECT) =>
        {
            let args = string_args(f)?;
            let [id_type, id_value] = args.as_slice() else {
                return Err(EngineError::BadCall(format!(
                    "{FORGET_SUBJECT} takes two text arguments: CALL {FORGET_SUBJECT}('email', 'anna@example.com')"
                )));
            };
            Command::ForgetSubject {
                id_type: id_type.clone(),
                id_value: id_value.clone(),
            }
        }
        Statement::Comment {
            object_type: ast::CommentObject::Column,
            ref object_name,
            ref comment,
            ..
        } => {
            let parts: Vec<String> = object_name
                .0
                .iter()
                .filter_map(|p| p.as_ident())
                .map(ident_name)
                .collect();
            match parts.as_slice() {
                [.., relation, column] => Command::CommentOnColumn {
                    relation: relation.clone(),
                    column: column.clone(),
                    comment: comment.clone(),
                },
                _ => {
                    return Err(EngineError::Syntax(format!(
                        "COMMENT ON COLUMN needs relation.column, not {object_name}"
                    )))
                }
            }
        }
        Statement::Set(ast::Set::SingleAssignment {
            ref variable,
            ref values,
            ..
        }) if is_purpose(variable) => Command::SetPurpose(purpose_value(values)?),
        Statement::Reset(ast::ResetStatement {
            reset: ast::Reset::ConfigurationParameter(ref name),
        }) if is_purpose(name) => Command::SetPurpose(None),
        Statement::Discard { .. } => Command::Discard,
        Statement::ShowVariable { ref variable } => Command::Show(show_name(variable)),
        Statement::StartTransaction { .. } => Command::Transaction(TransactionStatement::Begin),
        Statement::Commit { .. } => Command::Transaction(TransactionStatement::Commit),
        Statement::Rollback {
            savepoint: None, ..
        } => Command::Transaction(TransactionStatement::Rollback),
        Statement::Savepoint { ref name } => {
            Command::Transaction(TransactionStatement::Savepoint(ident_name(name)))
        }
        Statement::ReleaseSavepoint { ref name } => {
            Command::Transaction(TransactionStatement::Release(ident_name(name)))
        }
        Statement::Rollback {
            savepoint: Some(ref name),
            ..
        } => Command::Transaction(TransactionStatement::RollbackTo(ident_name(name))),
        Statement::Deallocate { ref name, .. } if name.value.eq_ignore_ascii_case("all") => {
            Command::Accept("DEALLOCATE ALL")
        }
        Statement::Deallocate { .. } => Command::Accept("DEALLOCATE"),
        _ => return Ok(None),
    }))
}

fn is_purpose(name: &ObjectName) -> bool {
    name.to_string().eq_ignore_ascii_case(PURPOSE_SETTING)
}

/// The purpose `SET tessera.purpose` gives: a string or a word; `''` or `DEFAULT` is none.
fn purpose_value(values: &[ast::Expr]) -> Result<Option<String>> {
    let text = match values {
        [ast::Expr::Value(v)] => match v.clone().into_string() {
            Some(s) => s,
            None => v.to_string(),
        },
        [ast::Expr::Identifier(i)] => i.value.clone(),
        other => {
            return Err(EngineError::InvalidParameter(format!(
                "{PURPOSE_SETTING} takes one purpose name, not {}",
                other
                    .iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )))
        }
    };
    let text = text.trim().to_string();
    Ok((!text.is_empty() && !text.eq_ignore_ascii_case("default")).then_some(text))
}

/// The setting a `SHOW` names, with PostgreSQL's spellings of the multi-word forms.
fn show_name(words: &[Ident]) -> String {
    let words: Vec<String> = words.iter().map(|w| w.value.to_lowercase()).collect();
    match words
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["time", "zone"] => "timezone".into(),
        ["transaction", "isolation", "level"] => "transaction_isolation".into(),
        _ => words.join("."),
    }
}

/// `ALTER VIEW v RENAME TO w` does not parse as ALTER TABLE; catch it by its words.
pub fn classify_alter_view(sql: &str) -> Option<Command> {
    let words: Vec<&str> = sql.split_whitespace().collect();
    match words.as_slice() {
        [alter, view, rest @ ..]
            if alter.eq_ignore_ascii_case("alter") && view.eq_ignore_ascii_case("view") =>
        {
            let (if_exists, rest) = match rest {
                [i, e, rest @ ..]
                    if i.eq_ignore_ascii_case("if") && e.eq_ignore_ascii_case("exists") =>
                {
                    (true, rest)
                }
                _ => (false, rest),
            };
            match rest {
                [name, rename, to, new_name]
                    if rename.eq_ignore_ascii_case("rename") && to.eq_ignore_ascii_case("to") =>
                {
                    Some(Command::Rename {
                        kind: ObjectType::View,
                        name: word_name(name),
                        new_name: word_name(new_name),
                        if_exists,
                    })
                }
                _ => None,
            }
        }
        _ => None,
    }
}

fn word_name(w: &str) -> String {
    let last = w.rsplit('.').next().unwrap_or(w);
    match last.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
        Some(q) => q.replace("\"\"", "\""),
        None => last.to_lowercase(),
    }
}

fn parse_copy(sql: &str) -> Result<CopyCommand> {
    let dialect = PostgreSqlDialect {};
    let stmts = datafusion::sql::sqlparser::parser::Parser::parse_sql(&dialect, sql)
        .map_err(|e| EngineError::Syntax(e.to_string()))?;
    let Some(Statement::Copy {
        source,
        to,
        target,
        options,
        legacy_options,
        ..
    }) = stmts.into_iter().next()
    else {
        return Err(EngineError::Syntax("expected a COPY statement".into()));
    };
    let mut format = CopyFormat::text();
    let mut explicit = CopyFormat::text();
    let mut set = Vec::new();
    for o in &options {
        match o {
            CopyOption::Format(f) => match f.value.to_lowercase().as_str() {
                "csv" => format = CopyFormat::csv(),
                "text" => format = CopyFormat::text(),
                "binary" => {
                    format = CopyFormat {
                        binary: true,
                        ..CopyFormat::text()
                    }
                }
                other => {
                    return Err(EngineError::NotSupported(format!(
                        "COPY format \"{other}\""
                    )))
                }
            },
            CopyOption::Delimiter(c) => {
                explicit.delimiter = ascii(*c)?;
                set.push("delimiter")
            }
            CopyOption::Null(n) => {
                explicit.null = n.clone();
                set.push("null")
            }
            CopyOption::Header(h) => {
                explicit.header = *h;
                set.push("header")
            }
            CopyOption::Quote(c) => {
                explicit.quote = ascii(*c)?;
                set.push("quote")
            }
            CopyOption::Escape(c) => {
                explicit.escape = ascii(*c)?;
                set.push("escape")
            }
            CopyOption::Encoding(e)
                if e.eq_ignore_ascii_case("utf8") || e.eq_ignore_ascii_case("utf-8") => {}
            other => return Err(EngineError::NotSupported(format!("COPY option {other}"))),
        }
    }
    for o in &legacy_options {
        match o {
            CopyLegacyOption::Csv(csv_opts) => {
                format = CopyFormat::csv();
                for c in csv_opts {
                    match c {
                        CopyLegacyCsvOption::Header => {
                            explicit.header = true;
                            set.push("header")
                        }
                        CopyLegacyCsvOption::Quote(q) => {
                            explicit.quote = ascii(*q)?;
                            set.push("quote")
                        }
                        CopyLegacyCsvOption::Escape(q) => {
                            explicit.escape = ascii(*q)?;
                            set.push("escape")
                        }
                        other => {
                            return Err(EngineError::NotSupported(format!("COPY option {other}")))
                        }
                    }
                }
            }
            CopyLegacyOption::Delimiter(c) => {
                explicit.delimiter = ascii(*c)?;
                set.push("delimiter")
            }
            CopyLegacyOption::Null(n) => {
                explicit.null = n.clone();
                set.push("null")
            }
            CopyLegacyOption::Binary => {
                format = CopyFormat {
                    binary: true,
                    ..CopyFormat::text()
                }
            }
            CopyLegacyOption::Header => {
                explicit.header = true;
                set.push("header")
            }
            other => return Err(EngineError::NotSupported(format!("COPY option {other}"))),
        }
    }
    for s in &set {
        match *s {
            "delimiter" => format.delimiter = explicit.delimiter,
            "null" => format.null = explicit.null.clone(),
            "header" => format.header = explicit.header,
            "quote" => format.quote = explicit.quote,
            _ => format.escape = explicit.escape,
        }
    }
    if !set.contains(&"escape") {
        // PostgreSQL: ESCAPE defaults to the QUOTE character.
        format.escape = format.quote;
    }
    if format.binary {
        // The binary header is not optional; `skip_header` reads it.
        format.header = true;
        if to {
            return Err(EngineError::NotSupported(
                "COPY TO STDOUT in binary format".into(),
            ));
        }
    } else if !format.csv && format.header {
        return Err(EngineError::NotSupported(
            "COPY HEADER in text format".into(),
        ));
    }
    let direction = match (to, &target, source) {
        (false, CopyTarget::Stdin, CopySource::Table { table_name, columns }) => CopyDirection::FromStdin {
            table: relation_name(&table_name),
            columns: columns.iter().map(ident_name).collect(),
        },
        (true, CopyTarget::Stdout, CopySource::Table { table_name, columns }) => {
            let cols = if columns.is_empty() {
                "*".to_string()
            } else {
                columns.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(", ")
            };
            CopyDirection::ToStdout { query: format!("SELECT {cols} FROM {table_name}") }
        }
        (true, CopyTarget::Stdout, CopySource::Query(q)) => CopyDirection::ToStdout { query: q.to_string() },
        (_, target, _) => {
            return Err(EngineError::NotSupported(format!(
                "COPY with {target}: the server reads and writes no files; use COPY ... FROM STDIN / TO STDOUT (psql: \\copy)"
            )))
        }
    };
    Ok(CopyCommand { direction, format })
}

fn ascii(c: char) -> Result<u8> {
    u8::try_from(c)
        .ok()
        .filter(|b| b.is_ascii())
        .ok_or_else(|| {
            EngineError::NotSupported(format!(
                "COPY delimiter or quote {c:?} (must be one ASCII character)"
            ))
        })
}

/// Names of the relations a statement reads from.
pub fn referenced_relations(stmt: &Statement) -> Vec<String> {
    let mut out = Vec::new();
    let _ = ast::visit_relations(stmt, |r| {
        out.push(relation_name(r));
        std::ops::ControlFlow::<()>::Continue(())
    });
    out
}

/// Rewrite every reference to relation `from` in `stmt` into `to`.
pub fn rename_references(stmt: &mut Statement, from: &str, to: &str) {
    let _ = ast::visit_relations_mut(stmt, |r| {
        if relation_name(r) == from {
            *r = ObjectName::from(vec![Ident::with_quote('"', to)]);
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_on_semicolons_outside_quotes_and_comments() {
        let s = "SELECT ';'; SELECT \"a;b\" -- c;d\n; /* x; */ SELECT $$;$$ ;; ";
        assert_eq!(
            split_statements(s),
            vec![
                "SELECT ';'",
                "SELECT \"a;b\" -- c;d",
                "/* x; */ SELECT $$;$$"
            ]
        );
        assert!(split_statements("  ;  ").is_empty());
        assert_eq!(split_statements("select 'it''s;'"), vec!["select 'it''s;'"]);
    }

    #[test]
    fn classifies_ddl_dml_and_queries() {
        assert!(matches!(
            classify("CREATE TABLE t (a int)"),
            Ok(Some(Command::CreateTable(_)))
        ));
        assert!(matches!(
            classify("create view v as select 1"),
            Ok(Some(Command::CreateView(_)))
        ));
        assert!(matches!(classify("SELECT 1"), Ok(None)));
        assert!(matches!(
            classify("DELETE FROM t WHERE a = 1"),
            Ok(Some(Command::Dml(_)))
        ));
        assert!(matches!(
            classify("DROP TABLE IF EXISTS a, \"B\" CASCADE"),
            Ok(Some(Command::Drop { if_exists: true, cascade: true, ref names, .. })) if names == &["a", "B"]
        ));
        assert!(matches!(
            classify("ALTER TABLE a RENAME TO b"),
            Ok(Some(Command::Rename { ref name, ref new_name, .. })) if name == "a" && new_name == "b"
        ));
        assert!(matches!(
            classify_alter_view("ALTER VIEW IF EXISTS public.v RENAME TO \"W\""),
            Some(Command::Rename { kind: ObjectType::View, if_exists: true, ref name, ref new_name }) if name == "v" && new_name == "W"
        ));
        assert!(matches!(classify("SELEC 1"), Err(EngineError::Syntax(_))));
    }

    #[test]
    fn copy_options_follow_postgres_defaults() {
        let Ok(Some(Command::Copy(c))) =
            classify("COPY t (a, b) FROM STDIN WITH (FORMAT csv, HEADER, NULL 'x')")
        else {
            panic!("not a copy")
        };
        assert!(
            matches!(c.direction, CopyDirection::FromStdin { ref table, ref columns } if table == "t" && columns == &["a", "b"])
        );
        assert_eq!(
            (
                c.format.csv,
                c.format.delimiter,
                c.format.header,
                c.format.null.as_str()
            ),
            (true, b',', true, "x")
        );
        let Ok(Some(Command::Copy(q))) = classify("COPY t FROM STDIN (FORMAT csv, QUOTE '''')")
        else {
            panic!("not a copy")
        };
        assert_eq!(
            (q.format.quote, q.format.escape),
            (b'\'', b'\''),
            "escape follows quote"
        );
        let Ok(Some(Command::Copy(c))) = classify("copy t from stdin") else {
            panic!("not a copy")
        };
        assert_eq!(c.format, CopyFormat::text());
        let Ok(Some(Command::Copy(c))) = classify("COPY (SELECT 1) TO STDOUT CSV HEADER") else {
            panic!()
        };
        assert!(c.format.csv && c.format.header);
        assert!(classify("COPY t FROM '/etc/passwd'").is_err());
    }

    #[test]
    fn finds_and_renames_references() {
        let DFStatement::Statement(mut s) =
            parse_one("CREATE VIEW v AS SELECT * FROM a JOIN b ON a.x = b.x").expect("parse")
        else {
            panic!()
        };
        let mut refs = referenced_relations(&s);
        refs.sort();
        assert!(refs.contains(&"a".to_string()) && refs.contains(&"b".to_string()));
        rename_references(&mut s, "a", "c");
        assert!(s.to_string().contains("FROM \"c\""), "{s}");
    }
}

#[cfg(test)]
mod purpose_tests {
    use super::*;

    #[test]
    fn set_and_reset_purpose() {
        for (sql, expected) in [
            (
                "SET tessera.purpose = 'email_marketing'",
                Some("email_marketing"),
            ),
            ("SET tessera.purpose TO sms", Some("sms")),
            ("set TESSERA.PURPOSE = ''", None),
            ("RESET tessera.purpose", None),
        ] {
            match classify(sql) {
                Ok(Some(Command::SetPurpose(p))) => assert_eq!(p.as_deref(), expected, "{sql}"),
                other => panic!("{sql}: {other:?}"),
            }
        }
    }
}
