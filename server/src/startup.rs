//! Connection startup: creates the client's [`SluiceSession`], applies the
//! settings it sent in the startup packet, and answers with the parameters a
//! Postgres 15 server reports (`server_version`, `client_encoding`,
//! `DateStyle`, …) and the key the client uses to cancel queries.
//!
//! pgwire's stock no-auth handler hardcodes its own parameter set
//! (`server_version` "16.6-pgwire", which makes psql 15 warn), so Sluice
//! answers the startup message itself with pgwire's building blocks.

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use futures::{Sink, SinkExt};
use log::{debug, warn};
use pgwire::api::auth::{
    StartupHandler, protocol_negotiation, save_startup_parameters_to_metadata,
};
use pgwire::api::{
    ClientInfo, METADATA_USER, PgWireConnectionState, PidSecretKeyGenerator,
    RandomPidSecretKeyGenerator,
};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::response::{ReadyForQuery, TransactionStatus};
use pgwire::messages::startup::{Authentication, BackendKeyData, ParameterStatus};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use sluice_engine::copy_in::CopyIn;
use sluice_engine::statement::SessionCommand;
use sluice_engine::{PreparedStatement, Sluice, SluiceSession};

use crate::auth::{AuthMethod, Authenticator, ScramProgress};
use crate::cancel::{CancelRegistry, QueryCanceller, RegistrationGuard};

/// Everything Sluice keeps for one client connection. Lives in pgwire's
/// per-connection extension store, so it is dropped when the socket closes.
#[derive(Debug)]
pub struct Connection {
    /// The client's engine session.
    pub session: SluiceSession,
    /// Cancels the connection's running query.
    pub canceller: Arc<QueryCanceller>,
    /// The `COPY … FROM STDIN` receiving the client's data, if one is running.
    pub copy_in: tokio::sync::Mutex<Option<Box<CopyIn>>>,
    /// Rows the running `COPY … TO STDOUT` has sent, for its `COPY n` tag.
    pub copy_out_rows: Arc<std::sync::atomic::AtomicUsize>,
    _registration: RegistrationGuard,
}

/// Fetches the connection state a startup handler stored.
pub fn connection<C: ClientInfo + ?Sized>(client: &C) -> PgWireResult<Arc<Connection>> {
    client
        .session_extensions()
        .get::<Connection>()
        .ok_or_else(|| PgWireError::ApiError("connection used before startup completed".into()))
}

/// Answers the startup packet: authenticates the client as `--auth` says
/// ([`crate::auth`]), then starts its session.
pub struct SluiceStartupHandler {
    engine: Sluice,
    registry: Arc<CancelRegistry>,
    keys: RandomPidSecretKeyGenerator,
    auth: Arc<Authenticator>,
    tls_required: bool,
}

impl SluiceStartupHandler {
    /// Creates the handler for `engine`, checking logins with `auth` and
    /// registering connections in `registry` so CancelRequests can find
    /// them; with `tls_required`, clients that did not encrypt their
    /// connection are refused before they can authenticate.
    pub fn new(
        engine: Sluice,
        registry: Arc<CancelRegistry>,
        auth: Arc<Authenticator>,
        tls_required: bool,
    ) -> Self {
        Self {
            engine,
            registry,
            keys: RandomPidSecretKeyGenerator::default(),
            auth,
            tls_required,
        }
    }
}

/// Startup-packet settings applied to the new session, as Postgres applies
/// them (pgjdbc sends `DateStyle`, `TimeZone`, `client_encoding` here).
const STARTUP_SETTINGS: &[&str] = &[
    "application_name",
    "client_encoding",
    "DateStyle",
    "TimeZone",
    "extra_float_digits",
    "search_path",
    "IntervalStyle",
    "statement_timeout",
];

#[async_trait]
impl StartupHandler for SluiceStartupHandler {
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
            PgWireFrontendMessage::Startup(startup) => {
                if self.tls_required && !client.is_secure() {
                    warn!(
                        "refusing an unencrypted connection from {} (--tls-required)",
                        client.socket_addr()
                    );
                    // Postgres' answer when pg_hba only has `hostssl` lines.
                    return Err(PgWireError::UserError(Box::new(ErrorInfo::new(
                        "FATAL".into(),
                        "28000".into(),
                        "this server accepts only encrypted connections: connect with TLS \
                         (sslmode=require or stronger)"
                            .into(),
                    ))));
                }
                protocol_negotiation(client, &startup).await?;
                save_startup_parameters_to_metadata(client, &startup);
                let request = match self.auth.method() {
                    AuthMethod::Trust => return self.start_session(client).await,
                    AuthMethod::Password => Authentication::CleartextPassword,
                    AuthMethod::ScramSha256 => {
                        client.session_extensions().insert(ScramProgress::default());
                        Authentication::SASL(self.auth.mechanisms())
                    }
                };
                client.set_state(PgWireConnectionState::AuthenticationInProgress);
                client
                    .send(PgWireBackendMessage::Authentication(request))
                    .await?;
                Ok(())
            }
            PgWireFrontendMessage::PasswordMessageFamily(message) => {
                let user = client
                    .metadata()
                    .get(METADATA_USER)
                    .cloned()
                    .unwrap_or_default();
                match self.auth.method() {
                    AuthMethod::Trust => Ok(()),
                    AuthMethod::Password => {
                        let password = message.into_password()?;
                        self.auth.check_password(&user, &password.password)?;
                        self.start_session(client).await
                    }
                    AuthMethod::ScramSha256 => {
                        let progress = client
                            .session_extensions()
                            .get::<ScramProgress>()
                            .ok_or(PgWireError::InvalidSASLState)?;
                        let (reply, finished) =
                            self.auth.scram_step(client, &progress, message).await?;
                        client
                            .send(PgWireBackendMessage::Authentication(reply))
                            .await?;
                        if finished {
                            self.start_session(client).await?;
                        }
                        Ok(())
                    }
                }
            }
            _ => Ok(()),
        }
    }
}

impl SluiceStartupHandler {
    /// Once the client is who it says: applies its startup settings, sends
    /// AuthenticationOk, the parameters, its cancel key and ReadyForQuery,
    /// and keeps its session.
    async fn start_session<C>(&self, client: &mut C) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let session = self.engine.session();
        if let Some(user) = client.metadata().get(METADATA_USER) {
            session.set_user(user);
        }
        for name in STARTUP_SETTINGS {
            let Some(value) = client
                .metadata()
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
            else {
                continue;
            };
            if let Err(e) = apply_setting(&session, name, &value).await {
                warn!("ignoring startup setting {name}={value}: {e}");
            }
        }

        let (pid, secret) = self.keys.generate(client);
        client.set_pid_and_secret_key(pid, secret.clone());
        let canceller = Arc::new(QueryCanceller::default());
        let registration = self.registry.register(pid, &secret, &canceller);

        client
            .feed(PgWireBackendMessage::Authentication(Authentication::Ok))
            .await?;
        let mut parameters = session.reported_settings();
        if let Some(user) = client.metadata().get(METADATA_USER) {
            parameters.push(("session_authorization".into(), user.clone()));
        }
        for (name, value) in parameters {
            client
                .feed(PgWireBackendMessage::ParameterStatus(ParameterStatus::new(
                    name, value,
                )))
                .await?;
        }
        client
            .feed(PgWireBackendMessage::BackendKeyData(BackendKeyData::new(
                pid, secret,
            )))
            .await?;
        client
            .send(PgWireBackendMessage::ReadyForQuery(ReadyForQuery::new(
                TransactionStatus::Idle,
            )))
            .await?;
        client.set_state(PgWireConnectionState::ReadyForQuery);

        client.session_extensions().insert(Connection {
            session,
            canceller,
            copy_in: tokio::sync::Mutex::new(None),
            copy_out_rows: Arc::default(),
            _registration: registration,
        });
        debug!("session started for {}", client.socket_addr());
        Ok(())
    }
}

async fn apply_setting(
    session: &SluiceSession,
    name: &str,
    value: &str,
) -> datafusion::error::Result<()> {
    let statement = sluice_engine::statement::SluiceStatement::Session(SessionCommand::Set {
        name: name.to_ascii_lowercase(),
        value: Some(value.to_string()),
    });
    let prepared: PreparedStatement = session.prepare(&statement).await?;
    session.execute(&prepared, None).await.map(|_| ())
}
