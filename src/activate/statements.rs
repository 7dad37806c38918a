//! `CREATE DESTINATION name FOR SEGMENT segment URL 'url' PURPOSE 'purpose'` (URL and
//! PURPOSE in either order) and `DROP DESTINATION [IF EXISTS] name`, after their first
//! two words (see `crate::collect::statements::classify`).

use datafusion::sql::sqlparser::parser::Parser;

use super::NewDestination;
use crate::collect::statements::{end, parse_drop_name, syntax, word};
use crate::engine::error::Result;
use crate::engine::sql::{ident_name, Command};

/// After `CREATE DESTINATION`.
pub fn parse_create(p: &mut Parser) -> Result<Command> {
    let name = ident_name(&p.parse_identifier().map_err(syntax)?);
    if !(word(p, "for") && word(p, "segment")) {
        let next = p.peek_token();
        return p.expected("FOR SEGMENT segment", next).map_err(syntax);
    }
    let segment = ident_name(&p.parse_identifier().map_err(syntax)?);
    let (mut url, mut purpose) = (None, None);
    while url.is_none() || purpose.is_none() {
        let slot = if url.is_none() && word(p, "url") {
            &mut url
        } else if purpose.is_none() && word(p, "purpose") {
            &mut purpose
        } else {
            let next = p.peek_token();
            let wanted = match (&url, &purpose) {
                (None, None) => "URL 'url' PURPOSE 'purpose'",
                (None, Some(_)) => "URL 'url'",
                _ => "PURPOSE 'purpose' (the consent people must have given to be sent)",
            };
            return p.expected(wanted, next).map_err(syntax);
        };
        *slot = Some(p.parse_literal_string().map_err(syntax)?);
    }
    end(p)?;
    Ok(Command::CreateDestination(NewDestination {
        name,
        segment,
        url: url.unwrap_or_default(),
        purpose: purpose.unwrap_or_default(),
    }))
}

/// After `DROP DESTINATION`.
pub fn parse_drop(p: &mut Parser) -> Result<Command> {
    let (name, if_exists) = parse_drop_name(p)?;
    Ok(Command::DropDestination { name, if_exists })
}

#[cfg(test)]
mod tests {
    use crate::collect::statements::classify;

    fn run(sql: &str) -> Option<std::result::Result<String, String>> {
        classify(sql).map(|r| r.map(|c| format!("{c:?}")).map_err(|e| e.to_string()))
    }

    #[test]
    fn reads_the_destination_statements() {
        let created = r#"CreateDestination(NewDestination { name: "crm", segment: "Vip", url: "http://x/h", purpose: "email" })"#;
        assert_eq!(
            run("CREATE DESTINATION CRM FOR SEGMENT \"Vip\" URL 'http://x/h' PURPOSE 'email';"),
            Some(Ok(created.into()))
        );
        assert_eq!(
            run("create destination crm for segment \"Vip\" purpose 'email' url 'http://x/h'"),
            Some(Ok(created.into()))
        );
        assert_eq!(
            run("DROP DESTINATION IF EXISTS crm"),
            Some(Ok(
                r#"DropDestination { name: "crm", if_exists: true }"#.into()
            ))
        );
        let err =
            run("CREATE DESTINATION crm FOR SEGMENT vip URL 'http://x'").and_then(Result::err);
        assert!(
            err.is_some_and(|e| e.contains("PURPOSE")),
            "purpose is required"
        );
        let err = run("CREATE DESTINATION crm SEGMENT vip").and_then(Result::err);
        assert!(err.is_some_and(|e| e.contains("FOR SEGMENT")));
        let err = run("CREATE DESTINATION c FOR SEGMENT v URL 'a' URL 'b' PURPOSE 'p'")
            .and_then(Result::err);
        assert!(err.is_some_and(|e| e.contains("PURPOSE")), "URL once");
        assert_eq!(run("CREATE TABLE destination (x int)"), None);
    }
}
