//! The statements of the collection and activation APIs, which sqlparser does not know:
//! `CREATE WRITE KEY name FOR SOURCE 'source'`, `DROP WRITE KEY [IF EXISTS] name`, and
//! the destination statements (read by `crate::activate::statements`).

use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion::sql::sqlparser::tokenizer::Token;

use crate::engine::error::{EngineError, Result};
use crate::engine::sql::{ident_name, Command};

/// The columns `CREATE WRITE KEY` answers with (one row).
pub const CREATED_COLUMNS: [&str; 3] = ["name", "source", "write_key"];

/// The statements of this module, recognised by their first words; `None` for any other.
pub fn classify(sql: &str) -> Option<Result<Command>> {
    let head: String = sql.trim_start().chars().take(6).collect();
    let head = head.to_ascii_lowercase();
    if !["create", "drop", "--", "/*"]
        .iter()
        .any(|w| head.starts_with(w))
    {
        return None;
    }
    let dialect = PostgreSqlDialect {};
    let mut p = Parser::new(&dialect).try_with_sql(sql).ok()?;
    let create = p.parse_keyword(Keyword::CREATE);
    if !create && !p.parse_keyword(Keyword::DROP) {
        return None;
    }
    if word(&mut p, "destination") {
        use crate::activate::statements as destination;
        return Some(if create {
            destination::parse_create(&mut p)
        } else {
            destination::parse_drop(&mut p)
        });
    }
    if !(word(&mut p, "write") && word(&mut p, "key")) {
        return None;
    }
    Some(if create {
        parse_create(&mut p)
    } else {
        parse_drop(&mut p)
    })
}

/// Consume the next token if it is the word `w` (any case, unquoted).
pub(crate) fn word(p: &mut Parser, w: &str) -> bool {
    match p.peek_token().token {
        Token::Word(ref t) if t.quote_style.is_none() && t.value.eq_ignore_ascii_case(w) => {
            p.next_token();
            true
        }
        _ => false,
    }
}

pub(crate) fn syntax(e: ParserError) -> EngineError {
    EngineError::Syntax(e.to_string())
}

/// After `CREATE WRITE KEY`: `name FOR SOURCE 'source'`.
fn parse_create(p: &mut Parser) -> Result<Command> {
    let name = ident_name(&p.parse_identifier().map_err(syntax)?);
    if !(word(p, "for") && word(p, "source")) {
        let next = p.peek_token();
        return p.expected("FOR SOURCE 'source'", next).map_err(syntax);
    }
    let source = p.parse_literal_string().map_err(syntax)?;
    end(p)?;
    Ok(Command::CreateWriteKey { name, source })
}

/// After `DROP WRITE KEY`: `[IF EXISTS] name`.
fn parse_drop(p: &mut Parser) -> Result<Command> {
    let (name, if_exists) = parse_drop_name(p)?;
    Ok(Command::DropWriteKey { name, if_exists })
}

/// `[IF EXISTS] name` and the end of the statement.
pub(crate) fn parse_drop_name(p: &mut Parser) -> Result<(String, bool)> {
    let if_exists = p.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
    let name = ident_name(&p.parse_identifier().map_err(syntax)?);
    end(p)?;
    Ok((name, if_exists))
}

pub(crate) fn end(p: &mut Parser) -> Result<()> {
    let _ = p.consume_token(&Token::SemiColon);
    let next = p.peek_token();
    if next.token != Token::EOF {
        return p.expected("end of statement", next).map_err(syntax);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(sql: &str) -> Option<std::result::Result<String, String>> {
        classify(sql).map(|r| r.map(|c| format!("{c:?}")).map_err(|e| e.to_string()))
    }

    #[test]
    fn reads_the_write_key_statements() {
        assert_eq!(
            run("create write key Web_Prod for source 'web';"),
            Some(Ok(
                r#"CreateWriteKey { name: "web_prod", source: "web" }"#.into()
            ))
        );
        assert_eq!(
            run("/* c */ DROP WRITE KEY IF EXISTS \"Web\""),
            Some(Ok(r#"DropWriteKey { name: "Web", if_exists: true }"#.into()))
        );
        assert_eq!(run("DROP TABLE t"), None);
        assert_eq!(run("CREATE TABLE write (key int)"), None);
        assert_eq!(run("SELECT 1"), None);
        let err = run("CREATE WRITE KEY k FOR 'web'").and_then(Result::err);
        assert!(err.is_some_and(|e| e.contains("FOR SOURCE")));
        let err = run("DROP WRITE KEY a b").and_then(Result::err);
        assert!(err.is_some_and(|e| e.contains("end of statement")));
    }
}
