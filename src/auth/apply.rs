//! Running a role statement against a copy of the roles: the checks PostgreSQL makes
//! (names taken or reserved, roles that must exist, membership cycles, the session's own
//! role) and the change itself. [`super::Roles::execute`] saves the result.

use std::collections::BTreeMap;

use datafusion::sql::sqlparser::ast::ObjectName;

use super::roles::{effective, Role};
use super::scram::Verifier;
use super::statements::{Relations, RoleCommand, RoleOptions};
use super::{AuthError, PII_ROLE, PURPOSE_SETTING};
use crate::engine::error::{EngineError, Result};

fn undefined(name: &str) -> EngineError {
    AuthError::UndefinedRole(name.to_string()).into()
}

fn existing<'a>(roles: &'a mut BTreeMap<String, Role>, name: &str) -> Result<&'a mut Role> {
    roles.get_mut(name).ok_or_else(|| undefined(name))
}

fn check_new_name(roles: &BTreeMap<String, Role>, name: &str) -> Result<()> {
    if name == PII_ROLE || name.starts_with("pg_") {
        return Err(AuthError::Reserved(format!("role name \"{name}\" is reserved")).into());
    }
    if roles.contains_key(name) {
        return Err(AuthError::DuplicateRole(name.to_string()).into());
    }
    Ok(())
}

fn check_not_predefined(name: &str, action: &str) -> Result<()> {
    if name == PII_ROLE {
        return Err(
            AuthError::Reserved(format!("cannot {action} predefined role \"{name}\"")).into(),
        );
    }
    Ok(())
}

fn set_options(role: &mut Role, o: RoleOptions) {
    if let Some(login) = o.login {
        role.login = login;
    }
    if let Some(superuser) = o.superuser {
        role.superuser = superuser;
    }
    if let Some(password) = o.password {
        role.verifier = password.map(|p| Verifier::new(&p.0));
    }
}

/// Apply a command to `roles`. Returns, for changes that could remove the last usable
/// superuser, what to call the change in the error.
pub(super) fn apply(
    roles: &mut BTreeMap<String, Role>,
    command: RoleCommand,
    actor: Option<&str>,
    resolve: &dyn Fn(&ObjectName, bool) -> Result<String>,
) -> Result<Option<String>> {
    match command {
        RoleCommand::Create {
            name,
            if_not_exists,
            options,
            in_roles,
        } => {
            if if_not_exists && roles.contains_key(&name) {
                return Ok(None);
            }
            check_new_name(roles, &name)?;
            if let Some(missing) = in_roles.iter().find(|r| !roles.contains_key(*r)) {
                return Err(undefined(missing));
            }
            let mut role = Role::new(&name);
            role.member_of = in_roles.into_iter().collect();
            set_options(&mut role, options);
            roles.insert(name, role);
            Ok(None)
        }
        RoleCommand::Alter { name, options } => {
            check_not_predefined(&name, "alter")?;
            set_options(existing(roles, &name)?, options);
            Ok(Some(format!("cannot alter role \"{name}\" this way")))
        }
        RoleCommand::Rename { name, new_name } => {
            existing(roles, &name)?;
            check_not_predefined(&name, "rename")?;
            if actor == Some(name.as_str()) {
                return Err(AuthError::CurrentUser("session user cannot be renamed".into()).into());
            }
            check_new_name(roles, &new_name)?;
            if let Some(mut role) = roles.remove(&name) {
                role.name = new_name.clone();
                roles.insert(new_name.clone(), role);
            }
            for r in roles.values_mut() {
                if r.member_of.remove(&name) {
                    r.member_of.insert(new_name.clone());
                }
            }
            Ok(None)
        }
        RoleCommand::Set {
            name,
            setting,
            value,
        } => {
            if setting != PURPOSE_SETTING {
                return Err(EngineError::NotSupported(format!(
                    "ALTER ROLE ... SET {setting} (roles keep {PURPOSE_SETTING} only)"
                )));
            }
            let role = existing(roles, &name)?;
            match value {
                Some(v) => role.settings.insert(setting, v),
                None => role.settings.remove(&setting),
            };
            Ok(None)
        }
        RoleCommand::ResetAll { name } => {
            existing(roles, &name)?.settings.clear();
            Ok(None)
        }
        RoleCommand::Drop { names, if_exists } => {
            for name in &names {
                if !roles.contains_key(name) {
                    if if_exists {
                        continue;
                    }
                    return Err(undefined(name));
                }
                check_not_predefined(name, "drop")?;
                if actor == Some(name.as_str()) {
                    return Err(
                        AuthError::CurrentUser("current user cannot be dropped".into()).into(),
                    );
                }
                roles.remove(name);
            }
            for r in roles.values_mut() {
                r.member_of.retain(|m| !names.contains(m));
            }
            Ok(Some(format!(
                "cannot drop role \"{}\"",
                names.join("\", \"")
            )))
        }
        RoleCommand::Select {
            grant,
            relations,
            roles: grantees,
        } => {
            if let Some(missing) = grantees.iter().find(|r| !roles.contains_key(*r)) {
                return Err(undefined(missing));
            }
            let names = match &relations {
                Relations::AllInPublic => vec![],
                Relations::Named(names) => names
                    .iter()
                    .map(|n| resolve(n, grant))
                    .collect::<Result<Vec<_>>>()?,
            };
            for g in &grantees {
                let grants = &mut existing(roles, g)?.grants;
                match (&relations, grant) {
                    (Relations::AllInPublic, _) => grants.all_tables = grant,
                    (Relations::Named(_), true) => grants.relations.extend(names.iter().cloned()),
                    (Relations::Named(_), false) => grants.relations.retain(|r| !names.contains(r)),
                }
            }
            Ok(None)
        }
        RoleCommand::Membership {
            grant,
            roles: granted,
            members,
        } => {
            if let Some(missing) = granted
                .iter()
                .chain(&members)
                .find(|r| !roles.contains_key(*r))
            {
                return Err(undefined(missing));
            }
            for role in &granted {
                for member in &members {
                    if !grant {
                        existing(roles, member)?.member_of.remove(role);
                        continue;
                    }
                    // `member` joining `role` closes a cycle if `role` already belongs
                    // to `member`.
                    let cycle = role == member
                        || effective(roles, role).is_some_and(|r| r.member_of.contains(member));
                    if cycle {
                        return Err(AuthError::CircularMembership {
                            role: role.clone(),
                            member: member.clone(),
                        }
                        .into());
                    }
                    existing(roles, member)?.member_of.insert(role.clone());
                }
            }
            Ok(None)
        }
    }
}
