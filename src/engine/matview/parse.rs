//! Reading the materialised-view statements DataFusion does not run: `CREATE
//! MATERIALIZED VIEW ... [WITH [NO] DATA]` (sqlparser stops before the `WITH DATA` tail)
//! and `REFRESH MATERIALIZED VIEW` (sqlparser does not know it). `DROP MATERIALIZED VIEW`
//! parses as any other `DROP` (see `sql::classify`).

use std::time::Duration;

use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{
    CreateTableOptions, CreateView, Expr, Query, SqlOption, Statement, Value,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};

use crate::engine::error::{EngineError, Result};
use crate::engine::sql::{self, Command};

/// The shortest refresh schedule accepted (the scheduler looks once a second).
const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// `CREATE MATERIALIZED VIEW`, as the engine runs it.
#[derive(Debug, Clone)]
pub struct CreateMaterializedView {
    pub definition: Definition,
    pub if_not_exists: bool,
    /// False for `WITH NO DATA`: the view is created unpopulated.
    pub with_data: bool,
}

/// What a materialised view is: a name, a query, optional column names and an optional
/// refresh schedule.
#[derive(Debug, Clone)]
pub struct Definition {
    pub name: String,
    /// Names given to the query's first columns (`CREATE MATERIALIZED VIEW v (a, b)`).
    pub columns: Vec<String>,
    pub query: Box<Query>,
    /// `WITH (refresh_interval = '5 minutes')`: the interval and the text as written.
    pub refresh_interval: Option<(Duration, String)>,
    /// `WITH (segment = true)`: a segment, one row per member (its `unified_id`); each
    /// refresh records who entered and who left in `tessera.segment_changes`.
    pub segment: bool,
    /// `WITH (key = 'column')`: a column by which a refresh that recomputes the whole
    /// view compares its rows with those stored, writing only the keys whose rows
    /// changed (see `super::diff`).
    pub key: Option<String>,
    /// The statement kept in the catalog: `CREATE MATERIALIZED VIEW name ... AS query`.
    pub sql: String,
}

impl Definition {
    /// Read a definition back from the catalog.
    pub fn parse(stored: &str) -> Result<Self> {
        match sql::parse_one(stored)? {
            DFStatement::Statement(s) => match *s {
                Statement::CreateView(v) if v.materialized => Self::from_create_view(v),
                _ => Err(bad_definition(stored)),
            },
            _ => Err(bad_definition(stored)),
        }
    }

    fn from_create_view(mut v: CreateView) -> Result<Self> {
        if v.or_replace || v.or_alter {
            return Err(EngineError::NotSupported(
                "CREATE OR REPLACE MATERIALIZED VIEW (as in PostgreSQL: use DROP MATERIALIZED VIEW, then CREATE)".into(),
            ));
        }
        if v.temporary || v.secure || v.to.is_some() || !v.cluster_by.is_empty() {
            return Err(EngineError::NotSupported(format!(
                "this form of CREATE MATERIALIZED VIEW ({v})"
            )));
        }
        let options = match &v.options {
            CreateTableOptions::None => Options::default(),
            CreateTableOptions::With(options) => Options::parse(options)?,
            other => {
                return Err(EngineError::NotSupported(format!(
                    "materialized view options {other}"
                )))
            }
        };
        v.if_not_exists = false;
        v.name_before_not_exists = false;
        Ok(Definition {
            name: sql::relation_name(&v.name),
            columns: v.columns.iter().map(|c| sql::ident_name(&c.name)).collect(),
            refresh_interval: options.refresh_interval,
            segment: options.segment,
            key: options.key,
            sql: Statement::CreateView(v.clone()).to_string(),
            query: v.query,
        })
    }
}

fn bad_definition(stored: &str) -> EngineError {
    EngineError::Syntax(format!(
        "catalog holds a bad materialized view definition: {stored}"
    ))
}

/// The statements of this module, recognised by their first words; `None` for any other.
pub fn classify(sql: &str) -> Option<Result<Command>> {
    // Most statements are queries: leave them before tokenizing.
    let start: String = sql.trim_start().chars().take(7).collect();
    let start = start.to_ascii_lowercase();
    if !["create", "refresh", "/*", "--"]
        .iter()
        .any(|w| start.starts_with(w))
    {
        return None;
    }
    let words = leading_words(sql, 4);
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    match words.as_slice() {
        ["create", "materialized", ..] | ["create", "or", "replace", "materialized"] => {
            Some(parse_create(sql).map(|c| Command::CreateMaterializedView(Box::new(c))))
        }
        ["refresh", ..] => Some(parse_refresh(sql)),
        _ => None,
    }
}

/// The first `n` words of a statement, lower-cased, skipping comments.
fn leading_words(sql: &str, n: usize) -> Vec<String> {
    let dialect = PostgreSqlDialect {};
    let Ok(tokens) = Tokenizer::new(&dialect, sql).tokenize() else {
        return vec![];
    };
    tokens
        .into_iter()
        .filter(|t| !matches!(t, Token::Whitespace(_)))
        .take(n)
        .map(|t| match t {
            Token::Word(w) => w.value.to_lowercase(),
            other => other.to_string(),
        })
        .collect()
}

fn syntax(e: ParserError) -> EngineError {
    EngineError::Syntax(e.to_string())
}

/// `CREATE MATERIALIZED VIEW [IF NOT EXISTS] name [(columns)] [WITH (options)] AS query
/// [WITH [NO] DATA]`.
fn parse_create(text: &str) -> Result<CreateMaterializedView> {
    let dialect = PostgreSqlDialect {};
    let mut p = Parser::new(&dialect).try_with_sql(text).map_err(syntax)?;
    p.expect_keyword_is(Keyword::CREATE).map_err(syntax)?;
    let or_replace = p.parse_keywords(&[Keyword::OR, Keyword::REPLACE]);
    let mut view = p
        .parse_create_view(false, or_replace, false, None)
        .map_err(syntax)?;
    let with_data = with_data_tail(&mut p)?;
    let if_not_exists = view.if_not_exists;
    view.or_replace = or_replace;
    Ok(CreateMaterializedView {
        definition: Definition::from_create_view(view)?,
        if_not_exists,
        with_data,
    })
}

/// `REFRESH MATERIALIZED VIEW [CONCURRENTLY] name [WITH [NO] DATA]`. CONCURRENTLY is
/// accepted: every refresh lets readers go on with the previous contents.
fn parse_refresh(text: &str) -> Result<Command> {
    let dialect = PostgreSqlDialect {};
    let mut p = Parser::new(&dialect).try_with_sql(text).map_err(syntax)?;
    for k in [Keyword::REFRESH, Keyword::MATERIALIZED, Keyword::VIEW] {
        p.expect_keyword_is(k).map_err(syntax)?;
    }
    let concurrently = p.parse_keyword(Keyword::CONCURRENTLY);
    let name = p.parse_object_name(false).map_err(syntax)?;
    let with_data = with_data_tail(&mut p)?;
    if concurrently && !with_data {
        return Err(EngineError::NotSupported(
            "REFRESH options CONCURRENTLY and WITH NO DATA together".into(),
        ));
    }
    Ok(Command::RefreshMaterializedView {
        name: sql::relation_name(&name),
        with_data,
    })
}

/// The optional `WITH [NO] DATA` that ends the statement; false for `WITH NO DATA`.
fn with_data_tail(p: &mut Parser) -> Result<bool> {
    let with_data = if p.parse_keywords(&[Keyword::WITH, Keyword::NO, Keyword::DATA]) {
        false
    } else {
        let _ = p.parse_keywords(&[Keyword::WITH, Keyword::DATA]);
        true
    };
    let _ = p.consume_token(&Token::SemiColon);
    let next = p.peek_token();
    if next.token != Token::EOF {
        return p.expected("end of statement", next).map_err(syntax);
    }
    Ok(with_data)
}

/// The `WITH (...)` options of a materialised view.
#[derive(Debug, Default)]
struct Options {
    refresh_interval: Option<(Duration, String)>,
    segment: bool,
    key: Option<String>,
}

impl Options {
    fn parse(options: &[SqlOption]) -> Result<Self> {
        let mut parsed = Options::default();
        for o in options {
            let SqlOption::KeyValue { key, value } = o else {
                return Err(unknown_option(o));
            };
            let text = match value {
                Expr::Value(v) => match &v.value {
                    Value::SingleQuotedString(s) => s.clone(),
                    Value::Number(n, _) => n.to_string(),
                    Value::Boolean(b) => b.to_string(),
                    _ => String::new(),
                },
                Expr::Identifier(i) => sql::ident_name(i),
                _ => String::new(),
            };
            match sql::ident_name(key).as_str() {
                "refresh_interval" => {
                    let duration = parse_interval(&text).map_err(EngineError::InvalidParameter)?;
                    parsed.refresh_interval = Some((duration, text));
                }
                "segment" => {
                    parsed.segment = match text.to_ascii_lowercase().as_str() {
                        "true" | "on" | "1" => true,
                        "false" | "off" | "0" => false,
                        _ => {
                            return Err(EngineError::InvalidParameter(format!(
                                "invalid value for boolean option \"segment\": {value}"
                            )))
                        }
                    }
                }
                "key" if !text.is_empty() => parsed.key = Some(text),
                _ => return Err(unknown_option(o)),
            }
        }
        if parsed.segment && parsed.key.is_some() {
            return Err(EngineError::InvalidParameter(
                "a segment takes no key (its members, unified_id, are compared at every refresh)"
                    .into(),
            ));
        }
        Ok(parsed)
    }
}

fn unknown_option(o: &SqlOption) -> EngineError {
    EngineError::InvalidParameter(format!(
        "unrecognized parameter \"{o}\" (materialized views take refresh_interval, segment and key)"
    ))
}

/// An interval such as `5 minutes`, `1 hour 30 min`, `90s` or `3600` (seconds).
pub fn parse_interval(text: &str) -> std::result::Result<Duration, String> {
    let bad = || {
        format!(
            "invalid refresh_interval \"{text}\": use a number and a unit, such as '30 seconds', '5 minutes', '1 hour' or '1 day'"
        )
    };
    let mut total = 0f64;
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let number_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..number_end].parse().map_err(|_| bad())?;
        rest = rest[number_end..].trim_start();
        let unit_end = rest
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(rest.len());
        let seconds = match rest[..unit_end].to_ascii_lowercase().as_str() {
            "" | "s" | "sec" | "secs" | "second" | "seconds" => 1.0,
            "m" | "min" | "mins" | "minute" | "minutes" => 60.0,
            "h" | "hr" | "hrs" | "hour" | "hours" => 3600.0,
            "d" | "day" | "days" => 86400.0,
            _ => return Err(bad()),
        };
        total += number * seconds;
        rest = rest[unit_end..].trim_start_matches([' ', ',']);
    }
    let duration = Duration::try_from_secs_f64(total).map_err(|_| bad())?;
    if duration < MIN_INTERVAL {
        return Err(format!(
            "refresh_interval \"{text}\" is shorter than the shortest schedule, 1 second"
        ));
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create(sql: &str) -> CreateMaterializedView {
        match classify(sql) {
            Some(Ok(Command::CreateMaterializedView(c))) => *c,
            other => panic!("{sql}: {other:?}"),
        }
    }

    #[test]
    fn create_with_options_and_data_tail() {
        let c = create(
            "create materialized view if not exists Mv (a, \"B\") with (refresh_interval = '5 minutes') as select 1, 2 with no data",
        );
        assert!(c.if_not_exists && !c.with_data);
        let d = &c.definition;
        assert_eq!(d.name, "mv");
        assert_eq!(d.columns, ["a", "B"]);
        assert_eq!(
            d.refresh_interval.as_ref().map(|(i, _)| i.as_secs()),
            Some(300)
        );
        assert!(!d.sql.contains("IF NOT EXISTS") && !d.sql.contains("DATA"));
        let again = Definition::parse(&d.sql).expect("stored text parses");
        assert_eq!(again.name, "mv");
        assert_eq!(again.columns, d.columns);
        assert!(create("/* c */ CREATE MATERIALIZED VIEW m AS SELECT 1 WITH DATA;").with_data);
        assert!(create("CREATE MATERIALIZED VIEW m AS SELECT 1").with_data);
        assert!(
            !create("CREATE MATERIALIZED VIEW m AS SELECT 1")
                .definition
                .segment
        );
        let seg = create("CREATE MATERIALIZED VIEW s WITH (segment = true, refresh_interval = '1 hour') AS SELECT 'a' AS unified_id");
        assert!(seg.definition.segment);
        let again = Definition::parse(&seg.definition.sql).expect("stored text parses");
        assert!(again.segment && again.refresh_interval.is_some());
        assert!(
            !create("CREATE MATERIALIZED VIEW s WITH (segment = off) AS SELECT 1")
                .definition
                .segment
        );
    }

    #[test]
    fn bad_create_statements() {
        for sql in [
            "CREATE OR REPLACE MATERIALIZED VIEW m AS SELECT 1",
            "CREATE MATERIALIZED VIEW m AS SELECT 1 WITH NO",
            "CREATE MATERIALIZED VIEW m WITH (fillfactor = 10) AS SELECT 1",
            "CREATE MATERIALIZED VIEW m WITH (refresh_interval = 'often') AS SELECT 1",
            "CREATE MATERIALIZED VIEW m WITH (segment = 'maybe') AS SELECT 1",
        ] {
            assert!(matches!(classify(sql), Some(Err(_))), "{sql}");
        }
        assert!(classify("CREATE VIEW v AS SELECT 1").is_none());
    }

    #[test]
    fn refresh_statements() {
        let refresh = |sql: &str| match classify(sql) {
            Some(Ok(Command::RefreshMaterializedView { name, with_data })) => (name, with_data),
            other => panic!("{sql}: {other:?}"),
        };
        assert_eq!(
            refresh("REFRESH MATERIALIZED VIEW public.Segments"),
            ("segments".into(), true)
        );
        assert_eq!(
            refresh("refresh materialized view concurrently \"Seg\" with data"),
            ("Seg".into(), true)
        );
        assert_eq!(
            refresh("REFRESH MATERIALIZED VIEW s WITH NO DATA"),
            ("s".into(), false)
        );
        assert!(matches!(
            classify("REFRESH MATERIALIZED VIEW CONCURRENTLY s WITH NO DATA"),
            Some(Err(EngineError::NotSupported(_)))
        ));
        assert!(matches!(
            classify("REFRESH TABLE s"),
            Some(Err(EngineError::Syntax(_)))
        ));
    }

    #[test]
    fn intervals() {
        let secs = |t: &str| parse_interval(t).map(|d| d.as_secs());
        assert_eq!(secs("5 minutes"), Ok(300));
        assert_eq!(secs("1 hour 30 min"), Ok(5400));
        assert_eq!(secs("1h30m"), Ok(5400));
        assert_eq!(secs("90"), Ok(90));
        assert_eq!(secs("2 days"), Ok(172_800));
        assert!(parse_interval("0.5 s").is_err());
        assert!(parse_interval("").is_err());
        assert!(parse_interval("5 fortnights").is_err());
        assert!(parse_interval("minutes").is_err());
    }
}
