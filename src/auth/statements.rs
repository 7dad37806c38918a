//! Reading the role statements into [`RoleCommand`]s.
//!
//! sqlparser (PostgreSQL dialect) parses `CREATE ROLE`, `ALTER ROLE`, `DROP ROLE` and
//! `GRANT/REVOKE privilege ON objects`; what it reads otherwise is handled at word level:
//! `CREATE USER` (sqlparser reads Snowflake's form: the options of `CREATE ROLE` are parsed
//! after the words instead) and role membership, `GRANT role TO role` (sqlparser expects a
//! privilege keyword there).

use datafusion::sql::sqlparser::ast::{
    self, AlterRoleOperation, GrantObjects, Grantee, GranteeName, GranteesType, ObjectName,
    Privileges, ResetConfig, RoleOption, SetConfigValue, Statement,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion::sql::sqlparser::tokenizer::Token;

use crate::engine::error::{EngineError, Result};
use crate::engine::sql::{ident_name, Command};

/// A role statement, run by [`super::Roles::execute`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoleCommand {
    /// `CREATE ROLE` (LOGIN off unless given) or `CREATE USER` (LOGIN on unless given).
    Create {
        name: String,
        if_not_exists: bool,
        options: RoleOptions,
        /// `IN ROLE a, b`: roles the new one becomes a member of.
        in_roles: Vec<String>,
    },
    /// `ALTER ROLE name [WITH] options`.
    Alter { name: String, options: RoleOptions },
    /// `ALTER ROLE name RENAME TO new_name`.
    Rename { name: String, new_name: String },
    /// `ALTER ROLE name SET setting = 'value'` (`value: None`: `RESET setting`).
    Set {
        name: String,
        setting: String,
        value: Option<String>,
    },
    /// `ALTER ROLE name RESET ALL`.
    ResetAll { name: String },
    /// `DROP ROLE [IF EXISTS] a, b`.
    Drop { names: Vec<String>, if_exists: bool },
    /// `GRANT SELECT ON ... TO roles` / `REVOKE SELECT ON ... FROM roles`.
    Select {
        grant: bool,
        relations: Relations,
        roles: Vec<String>,
    },
    /// `GRANT role TO members` / `REVOKE role FROM members`.
    Membership {
        grant: bool,
        roles: Vec<String>,
        members: Vec<String>,
    },
}

/// The relations a `GRANT SELECT` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Relations {
    /// `ON [TABLE] a, b`: names as the user wrote them (resolved by the engine).
    Named(Vec<ObjectName>),
    /// `ON ALL TABLES IN SCHEMA public`.
    AllInPublic,
}

/// The options of `CREATE ROLE` / `ALTER ROLE`; `None` leaves a setting as it is (or at
/// its default).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoleOptions {
    pub login: Option<bool>,
    pub superuser: Option<bool>,
    /// `PASSWORD 'x'` (`Some(Some)`), `PASSWORD NULL` (`Some(None)`).
    pub password: Option<Option<Secret>>,
}

/// A password on its way to being hashed; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl RoleCommand {
    /// The command tag PostgreSQL answers with.
    pub fn tag(&self) -> &'static str {
        match self {
            RoleCommand::Create { .. } => "CREATE ROLE",
            RoleCommand::Alter { .. }
            | RoleCommand::Rename { .. }
            | RoleCommand::Set { .. }
            | RoleCommand::ResetAll { .. } => "ALTER ROLE",
            RoleCommand::Drop { .. } => "DROP ROLE",
            RoleCommand::Select { grant: true, .. }
            | RoleCommand::Membership { grant: true, .. } => "GRANT",
            RoleCommand::Select { .. } | RoleCommand::Membership { .. } => "REVOKE",
        }
    }

    /// What a non-superuser is refused (`permission denied to create role`).
    pub fn action(&self) -> &'static str {
        match self {
            RoleCommand::Create { .. } => "create role",
            RoleCommand::Alter { .. }
            | RoleCommand::Rename { .. }
            | RoleCommand::Set { .. }
            | RoleCommand::ResetAll { .. } => "alter role",
            RoleCommand::Drop { .. } => "drop role",
            RoleCommand::Select { grant: true, .. } => "grant privileges",
            RoleCommand::Select { .. } => "revoke privileges",
            RoleCommand::Membership { grant: true, .. } => "grant role",
            RoleCommand::Membership { .. } => "revoke role",
        }
    }
}

/// The statements of this module, recognised by their first words; `None` for any other.
pub fn classify(sql: &str) -> Option<Result<Command>> {
    let head: String = sql.trim_start().chars().take(6).collect();
    let head = head.to_ascii_lowercase();
    if !["create", "alter", "drop", "grant", "revoke", "--", "/*"]
        .iter()
        .any(|w| head.starts_with(w))
    {
        return None;
    }
    let dialect = PostgreSqlDialect {};
    let mut p = Parser::new(&dialect).try_with_sql(sql).ok()?;
    let parsed = match p.peek_token().token {
        Token::Word(w) => match w.keyword {
            Keyword::CREATE => create(&mut p)?,
            Keyword::ALTER => alter(&mut p)?,
            Keyword::DROP => drop(&mut p)?,
            Keyword::GRANT | Keyword::REVOKE => grant(&mut p, sql)?,
            _ => return None,
        },
        _ => return None,
    };
    Some(parsed.map(|c| Command::Role(Box::new(c))))
}

fn syntax(e: ParserError) -> EngineError {
    EngineError::Syntax(e.to_string())
}

fn end(p: &mut Parser) -> Result<()> {
    let _ = p.consume_token(&Token::SemiColon);
    let next = p.peek_token();
    if next.token != Token::EOF {
        return p.expected("end of statement", next).map_err(syntax);
    }
    Ok(())
}

/// A role name: one identifier, lower-cased unless quoted.
fn role_name(name: &ObjectName) -> Result<String> {
    match name.0.as_slice() {
        [part] => part
            .as_ident()
            .map(ident_name)
            .ok_or_else(|| EngineError::Syntax(format!("bad role name {name}"))),
        _ => Err(EngineError::Syntax(format!(
            "role name {name} cannot be qualified"
        ))),
    }
}

/// `CREATE ROLE ...` / `CREATE USER ...`; `None` for other CREATE statements.
fn create(p: &mut Parser) -> Option<Result<RoleCommand>> {
    p.next_token(); // CREATE
    let user = if p.parse_keyword(Keyword::USER) {
        true
    } else if p.parse_keyword(Keyword::ROLE) {
        false
    } else {
        return None;
    };
    Some((|| {
        let c = p.parse_create_role().map_err(syntax)?;
        end(p)?;
        let name = match c.names.as_slice() {
            [n] => role_name(n)?,
            _ => return Err(EngineError::Syntax("CREATE ROLE takes one name".into())),
        };
        let unsupported = [
            ("CREATEDB", c.create_db == Some(true)),
            ("CREATEROLE", c.create_role == Some(true)),
            ("REPLICATION", c.replication == Some(true)),
            ("BYPASSRLS", c.bypassrls == Some(true)),
            ("NOINHERIT", c.inherit == Some(false)),
            ("CONNECTION LIMIT", c.connection_limit.is_some()),
            ("VALID UNTIL", c.valid_until.is_some()),
            ("ROLE", !c.role.is_empty()),
            ("USER", !c.user.is_empty()),
            ("ADMIN", !c.admin.is_empty()),
        ];
        if let Some((option, _)) = unsupported.iter().find(|(_, used)| *used) {
            return Err(not_supported(option));
        }
        let password = c.password.as_ref().map(password).transpose()?;
        Ok(RoleCommand::Create {
            name,
            if_not_exists: c.if_not_exists,
            options: RoleOptions {
                login: Some(c.login.unwrap_or(user)),
                superuser: c.superuser,
                password,
            },
            in_roles: c
                .in_role
                .iter()
                .chain(&c.in_group)
                .map(ident_name)
                .collect(),
        })
    })())
}

fn not_supported(option: &str) -> EngineError {
    EngineError::NotSupported(format!(
        "role option {option} (tessera roles have LOGIN, SUPERUSER, PASSWORD and memberships)"
    ))
}

fn password(p: &ast::Password) -> Result<Option<Secret>> {
    match p {
        ast::Password::NullPassword => Ok(None),
        ast::Password::Password(e) => match string_of(e) {
            // PostgreSQL too clears the password on an empty one.
            Some(s) if s.is_empty() => Ok(None),
            Some(s) => Ok(Some(Secret(s))),
            None => Err(EngineError::Syntax(
                "PASSWORD takes a string or NULL".into(),
            )),
        },
    }
}

fn string_of(e: &ast::Expr) -> Option<String> {
    match e {
        ast::Expr::Value(v) => v.value.clone().into_string(),
        ast::Expr::Identifier(i) => Some(i.value.clone()),
        _ => None,
    }
}

/// `ALTER ROLE|USER ...`; `None` for other ALTER statements.
fn alter(p: &mut Parser) -> Option<Result<RoleCommand>> {
    p.next_token(); // ALTER
    if !(p.parse_keyword(Keyword::ROLE) || p.parse_keyword(Keyword::USER)) {
        return None;
    }
    Some((|| {
        let Statement::AlterRole { name, operation } = p.parse_alter_role().map_err(syntax)? else {
            return Err(EngineError::Syntax("expected ALTER ROLE".into()));
        };
        end(p)?;
        let name = ident_name(&name);
        Ok(match operation {
            AlterRoleOperation::RenameRole { role_name } => RoleCommand::Rename {
                name,
                new_name: ident_name(&role_name),
            },
            AlterRoleOperation::WithOptions { options } => {
                let mut o = RoleOptions::default();
                for option in &options {
                    match option {
                        RoleOption::Login(b) => o.login = Some(*b),
                        RoleOption::SuperUser(b) => o.superuser = Some(*b),
                        RoleOption::Password(pw) => o.password = Some(password(pw)?),
                        RoleOption::Inherit(true)
                        | RoleOption::CreateDB(false)
                        | RoleOption::CreateRole(false)
                        | RoleOption::Replication(false)
                        | RoleOption::BypassRLS(false) => {}
                        other => return Err(not_supported(&other.to_string())),
                    }
                }
                RoleCommand::Alter { name, options: o }
            }
            AlterRoleOperation::Set {
                in_database: Some(_),
                ..
            }
            | AlterRoleOperation::Reset {
                in_database: Some(_),
                ..
            } => {
                return Err(EngineError::NotSupported(
                    "ALTER ROLE ... IN DATABASE (tessera has one database)".into(),
                ))
            }
            AlterRoleOperation::Set {
                config_name,
                config_value,
                ..
            } => {
                let setting = config_name.to_string().to_lowercase();
                let value = match config_value {
                    SetConfigValue::Value(e) => Some(string_of(&e).ok_or_else(|| {
                        EngineError::Syntax(format!("{setting} takes a string value"))
                    })?),
                    SetConfigValue::Default => None,
                    SetConfigValue::FromCurrent => {
                        return Err(EngineError::NotSupported(
                            "ALTER ROLE ... SET ... FROM CURRENT".into(),
                        ))
                    }
                };
                RoleCommand::Set {
                    name,
                    setting,
                    value,
                }
            }
            AlterRoleOperation::Reset { config_name, .. } => match config_name {
                ResetConfig::ALL => RoleCommand::ResetAll { name },
                ResetConfig::ConfigName(n) => RoleCommand::Set {
                    name,
                    setting: n.to_string().to_lowercase(),
                    value: None,
                },
            },
            AlterRoleOperation::AddMember { .. } | AlterRoleOperation::DropMember { .. } => {
                return Err(EngineError::NotSupported(
                    "ALTER ROLE ADD/DROP MEMBER (use GRANT role TO member)".into(),
                ))
            }
        })
    })())
}

/// `DROP ROLE|USER [IF EXISTS] a, b`; `None` for other DROP statements.
fn drop(p: &mut Parser) -> Option<Result<RoleCommand>> {
    p.next_token(); // DROP
    let is_role = matches!(
        p.peek_token().token,
        Token::Word(ref w) if w.keyword == Keyword::ROLE || w.keyword == Keyword::USER
    );
    if !is_role {
        return None;
    }
    p.next_token();
    Some((|| {
        let if_exists = p.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
        let names = p
            .parse_comma_separated(|p| p.parse_identifier())
            .map_err(syntax)?;
        end(p)?;
        Ok(RoleCommand::Drop {
            names: names.iter().map(ident_name).collect(),
            if_exists,
        })
    })())
}

/// `GRANT|REVOKE privileges ON objects TO|FROM roles`, or role membership
/// `GRANT|REVOKE role, ... TO|FROM role, ...` (no `ON`).
fn grant(p: &mut Parser, sql: &str) -> Option<Result<RoleCommand>> {
    let grant = p.parse_keyword(Keyword::GRANT);
    if !grant {
        p.next_token(); // REVOKE
    }
    let has_on = has_top_level_on(sql);
    Some(if has_on {
        privileges(p, grant)
    } else {
        membership(p, grant)
    })
}

/// Whether the statement has the word ON outside quotes (tokenised, so `"on"` is not).
fn has_top_level_on(sql: &str) -> bool {
    let dialect = PostgreSqlDialect {};
    datafusion::sql::sqlparser::tokenizer::Tokenizer::new(&dialect, sql)
        .tokenize()
        .map(|tokens| {
            tokens
                .iter()
                .any(|t| matches!(t, Token::Word(w) if w.keyword == Keyword::ON && w.quote_style.is_none()))
        })
        .unwrap_or(false)
}

fn privileges(p: &mut Parser, grant: bool) -> Result<RoleCommand> {
    let (privileges, objects, grantees) = if grant {
        let g = p.parse_grant().map_err(syntax)?;
        if g.with_grant_option {
            return Err(EngineError::NotSupported("WITH GRANT OPTION".into()));
        }
        (g.privileges, g.objects, g.grantees)
    } else {
        let r = p.parse_revoke().map_err(syntax)?;
        (r.privileges, r.objects, r.grantees)
    };
    end(p)?;
    match privileges {
        Privileges::Actions(actions)
            if !actions.is_empty()
                && actions
                    .iter()
                    .all(|a| matches!(a, ast::Action::Select { columns: None })) => {}
        other => {
            return Err(EngineError::NotSupported(format!(
                "{} {other} (tessera grants SELECT on relations; writes and DDL need a superuser)",
                if grant { "GRANT" } else { "REVOKE" }
            )))
        }
    }
    let relations = match objects {
        Some(GrantObjects::Tables(names)) => Relations::Named(names),
        Some(GrantObjects::AllTablesInSchema { schemas }) => {
            let only_public = schemas
                .iter()
                .all(|s| role_name(s).is_ok_and(|n| n == crate::engine::SCHEMA));
            if !only_public {
                return Err(EngineError::NotSupported(
                    "ALL TABLES IN SCHEMA other than public".into(),
                ));
            }
            Relations::AllInPublic
        }
        Some(other) => {
            return Err(EngineError::NotSupported(format!(
                "privileges on {other} (tessera grants SELECT on tables and views)"
            )))
        }
        None => return Err(EngineError::Syntax("expected ON".into())),
    };
    Ok(RoleCommand::Select {
        grant,
        relations,
        roles: grantee_names(&grantees)?,
    })
}

fn grantee_names(grantees: &[Grantee]) -> Result<Vec<String>> {
    grantees
        .iter()
        .map(|g| match (&g.grantee_type, &g.name) {
            (
                GranteesType::None | GranteesType::Role | GranteesType::User | GranteesType::Group,
                Some(GranteeName::ObjectName(n)),
            ) => role_name(n),
            (GranteesType::Public, _) => Err(EngineError::NotSupported(
                "granting to PUBLIC (grant to roles)".into(),
            )),
            _ => Err(EngineError::Syntax("bad grantee".into())),
        })
        .collect()
}

/// After GRANT/REVOKE: `role, ... TO|FROM member, ...`.
fn membership(p: &mut Parser, grant: bool) -> Result<RoleCommand> {
    let ident_list = |p: &mut Parser| {
        p.parse_comma_separated(|p| p.parse_identifier())
            .map(|ids| ids.iter().map(ident_name).collect::<Vec<_>>())
            .map_err(syntax)
    };
    let roles = ident_list(p)?;
    let keyword = if grant { Keyword::TO } else { Keyword::FROM };
    p.expect_keyword_is(keyword).map_err(syntax)?;
    let members = ident_list(p)?;
    end(p)?;
    Ok(RoleCommand::Membership {
        grant,
        roles,
        members,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(sql: &str) -> Option<std::result::Result<RoleCommand, String>> {
        classify(sql).map(|r| {
            r.map(|c| match c {
                Command::Role(r) => *r,
                other => panic!("not a role command: {other:?}"),
            })
            .map_err(|e| e.to_string())
        })
    }

    fn ok(sql: &str) -> RoleCommand {
        match run(sql) {
            Some(Ok(c)) => c,
            other => panic!("{sql}: {other:?}"),
        }
    }

    #[test]
    fn reads_create_alter_drop() {
        assert_eq!(
            ok("CREATE ROLE Analyst WITH LOGIN PASSWORD 'pw' IN ROLE tessera_pii"),
            RoleCommand::Create {
                name: "analyst".into(),
                if_not_exists: false,
                options: RoleOptions {
                    login: Some(true),
                    superuser: None,
                    password: Some(Some(Secret("pw".into()))),
                },
                in_roles: vec!["tessera_pii".into()],
            }
        );
        let RoleCommand::Create { options, .. } = ok("create user bob") else {
            panic!()
        };
        assert_eq!(options.login, Some(true));
        let RoleCommand::Create { options, .. } = ok("CREATE ROLE r NOLOGIN SUPERUSER") else {
            panic!()
        };
        assert_eq!(
            (options.login, options.superuser),
            (Some(false), Some(true))
        );
        assert_eq!(
            ok("ALTER ROLE bob WITH PASSWORD NULL NOSUPERUSER"),
            RoleCommand::Alter {
                name: "bob".into(),
                options: RoleOptions {
                    login: None,
                    superuser: Some(false),
                    password: Some(None),
                },
            }
        );
        assert_eq!(
            ok("alter role bob rename to \"Robert\""),
            RoleCommand::Rename {
                name: "bob".into(),
                new_name: "Robert".into()
            }
        );
        assert_eq!(
            ok("ALTER ROLE bob SET tessera.purpose = 'email_marketing'"),
            RoleCommand::Set {
                name: "bob".into(),
                setting: "tessera.purpose".into(),
                value: Some("email_marketing".into())
            }
        );
        assert_eq!(
            ok("ALTER ROLE bob RESET tessera.purpose"),
            RoleCommand::Set {
                name: "bob".into(),
                setting: "tessera.purpose".into(),
                value: None
            }
        );
        assert_eq!(
            ok("DROP ROLE IF EXISTS a, B"),
            RoleCommand::Drop {
                names: vec!["a".into(), "b".into()],
                if_exists: true
            }
        );
        assert!(format!("{:?}", ok("CREATE USER x PASSWORD 'hunter2'")).contains("Secret(..)"));
        assert!(!format!("{:?}", ok("CREATE USER x PASSWORD 'hunter2'")).contains("hunter2"));
    }

    #[test]
    fn reads_grants_and_memberships() {
        let RoleCommand::Select {
            grant: true,
            relations: Relations::Named(names),
            roles,
        } = ok("GRANT SELECT ON TABLE crm, web TO analyst")
        else {
            panic!()
        };
        assert_eq!(names.len(), 2);
        assert_eq!(roles, vec!["analyst"]);
        assert!(matches!(
            ok("REVOKE SELECT ON ALL TABLES IN SCHEMA public FROM analyst"),
            RoleCommand::Select {
                grant: false,
                relations: Relations::AllInPublic,
                ..
            }
        ));
        assert_eq!(
            ok("GRANT tessera_pii TO analyst, bob"),
            RoleCommand::Membership {
                grant: true,
                roles: vec!["tessera_pii".into()],
                members: vec!["analyst".into(), "bob".into()]
            }
        );
        assert_eq!(
            ok("revoke tessera_pii from analyst"),
            RoleCommand::Membership {
                grant: false,
                roles: vec!["tessera_pii".into()],
                members: vec!["analyst".into()]
            }
        );
        let err = run("GRANT INSERT ON crm TO a").and_then(Result::err);
        assert!(err.is_some_and(|e| e.contains("not supported")));
    }

    #[test]
    fn leaves_other_statements_alone() {
        for sql in [
            "CREATE TABLE role (a int)",
            "DROP TABLE t",
            "ALTER TABLE t RENAME TO u",
            "SELECT 1",
            "CREATE WRITE KEY k FOR SOURCE 'web'",
        ] {
            assert_eq!(run(sql), None, "{sql}");
        }
        assert!(matches!(run("CREATE ROLE"), Some(Err(_))));
    }
}
