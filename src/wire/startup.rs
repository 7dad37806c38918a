//! Connection start-up: who the client is.
//!
//! With [`Authentication::Scram`] (the default) a client proves it knows its role's
//! password with SCRAM-SHA-256, checked against the role's stored verifier
//! ([`crate::auth::scram`]); a wrong password and an unknown role fail alike (28P01), and
//! a role without LOGIN is refused once its password is right (28000), as in PostgreSQL.
//! [`Authentication::Trust`] (`--insecure-no-auth`) asks no password but still needs an
//! existing LOGIN role.
//!
//! Either way the role is left in the connection's metadata under `user` (pgwire's
//! `METADATA_USER`), where statements find the session's role, and the connection is
//! registered with the [`ConnectionManager`] so a CancelRequest can reach it.
//!
//! pgwire calls [`super::Handlers`]' `startup_handler` once per connection, so one
//! [`Startup`] holds one connection's exchange.

use std::fmt::Debug;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use futures::{Sink, SinkExt};
use pgwire::api::auth::{
    finish_authentication, protocol_negotiation, save_startup_parameters_to_metadata,
    DefaultServerParameterProvider, StartupHandler,
};
use pgwire::api::{
    ClientInfo, ConnectionGuard, ConnectionHandle, ConnectionManager, PgWireConnectionState,
    PidSecretKeyGenerator, METADATA_USER,
};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::startup::Authentication as AuthMessage;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use tracing::info;

use crate::auth::scram::{Exchange, ScramError, Verifier, MECHANISM};
use crate::auth::Roles;

/// How clients prove who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Authentication {
    /// SCRAM-SHA-256 with the role's password.
    Scram,
    /// No password (`--insecure-no-auth`): any existing LOGIN role is believed.
    Trust,
}

/// The start-up of one connection.
pub struct Startup {
    pub(super) roles: Roles,
    pub(super) mode: Authentication,
    pub(super) connections: Arc<ConnectionManager>,
    pub(super) pids: Arc<dyn PidSecretKeyGenerator>,
    /// The SCRAM exchange between the client's first and last message.
    pub(super) exchange: Mutex<Option<Exchange>>,
}

fn fatal(code: &str, message: String) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "FATAL".into(),
        code.into(),
        message,
    )))
}

fn password_failed(user: &str) -> PgWireError {
    fatal(
        "28P01",
        format!("password authentication failed for user \"{user}\""),
    )
}

fn protocol_violation(message: String) -> PgWireError {
    fatal("08P01", message)
}

impl Startup {
    /// The role may start a session: it exists and has LOGIN (28000 otherwise).
    fn check_login(&self, user: &str) -> PgWireResult<bool> {
        match self.roles.get(user) {
            None => Err(fatal("28000", format!("role \"{user}\" does not exist"))),
            Some(r) if !r.login => Err(fatal(
                "28000",
                format!("role \"{user}\" is not permitted to log in"),
            )),
            Some(r) => Ok(r.superuser),
        }
    }

    /// Register the connection, send AuthenticationOk, parameters and ReadyForQuery.
    async fn finish<C>(&self, client: &mut C, superuser: bool) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let (pid, secret_key) = self.pids.generate(client);
        client.set_pid_and_secret_key(pid, secret_key.clone());
        let (handle, guard) = self.connections.register(pid, secret_key);
        client
            .session_extensions()
            .insert::<Arc<ConnectionHandle>>(handle);
        client.session_extensions().insert::<ConnectionGuard>(guard);
        let mut parameters = DefaultServerParameterProvider::default();
        parameters.is_superuser = superuser;
        finish_authentication(client, &parameters).await
    }

    /// The client's SASL messages: the initial response (mechanism and client-first),
    /// then the client-final message.
    async fn on_password<C>(
        &self,
        client: &mut C,
        user: &str,
        message: pgwire::messages::startup::PasswordMessageFamily,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let started = self
            .exchange
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let text = |data: &[u8]| {
            std::str::from_utf8(data)
                .map(str::to_string)
                .map_err(|_| protocol_violation("SCRAM message is not UTF-8".into()))
        };
        match started {
            None => {
                let initial = message.into_sasl_initial_response()?;
                if initial.auth_method != MECHANISM {
                    return Err(PgWireError::UnsupportedSASLAuthMethod(initial.auth_method));
                }
                let data = initial.data.as_deref().unwrap_or_default();
                // Unknown roles and roles without a password run the exchange to its end
                // and fail there, like a wrong password.
                let verifier = self
                    .roles
                    .get(user)
                    .and_then(|r| r.verifier.clone())
                    .unwrap_or_else(|| Verifier::impossible(user, self.roles.secret()));
                let (exchange, server_first) =
                    Exchange::start(&text(data)?, verifier).map_err(|e| scram_error(e, user))?;
                *self.exchange.lock().unwrap_or_else(|p| p.into_inner()) = Some(exchange);
                client
                    .send(PgWireBackendMessage::Authentication(
                        AuthMessage::SASLContinue(Bytes::from(server_first)),
                    ))
                    .await?;
                Ok(())
            }
            Some(exchange) => {
                let response = message.into_sasl_response()?;
                let server_final = exchange
                    .finish(&text(&response.data)?)
                    .map_err(|e| scram_error(e, user))?;
                let superuser = self.check_login(user)?;
                client
                    .send(PgWireBackendMessage::Authentication(
                        AuthMessage::SASLFinal(Bytes::from(server_final)),
                    ))
                    .await?;
                self.finish(client, superuser).await
            }
        }
    }
}

fn scram_error(e: ScramError, user: &str) -> PgWireError {
    match e {
        ScramError::BadProof => {
            info!(user, "password authentication failed");
            password_failed(user)
        }
        other => protocol_violation(other.to_string()),
    }
}

#[async_trait]
impl StartupHandler for Startup {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match message {
            PgWireFrontendMessage::Startup(ref startup) => {
                protocol_negotiation(client, startup).await?;
                save_startup_parameters_to_metadata(client, startup);
                let user = client
                    .metadata()
                    .get(METADATA_USER)
                    .cloned()
                    .ok_or(PgWireError::UserNameRequired)?;
                match self.mode {
                    Authentication::Trust => {
                        let superuser = self.check_login(&user)?;
                        self.finish(client, superuser).await
                    }
                    Authentication::Scram => {
                        client.set_state(PgWireConnectionState::AuthenticationInProgress);
                        client
                            .send(PgWireBackendMessage::Authentication(AuthMessage::SASL(
                                vec![MECHANISM.to_string()],
                            )))
                            .await?;
                        Ok(())
                    }
                }
            }
            PgWireFrontendMessage::PasswordMessageFamily(message)
                if self.mode == Authentication::Scram =>
            {
                let user = client
                    .metadata()
                    .get(METADATA_USER)
                    .cloned()
                    .ok_or(PgWireError::UserNameRequired)?;
                self.on_password(client, &user, message).await
            }
            _ => Ok(()),
        }
    }
}
