//! Who may connect: `--auth trust | password | scram-sha-256`, with users
//! and passwords from a file (`--users-file`, one `name:password` per
//! line). pgwire does the SCRAM-SHA-256 exchange
//! ([`ScramAuth::process_scram_message`]); this module keeps the users,
//! the per-connection exchange state and the rules around it:
//! - passwords are kept only salted and hashed (SCRAM's salted password,
//!   4096 iterations of PBKDF2-SHA-256, a random salt per user);
//! - an unknown user goes through the same exchange against a decoy, so a
//!   failed login takes as long and says the same (SQLSTATE 28P01) whether
//!   the user exists or not; every failure is logged;
//! - `trust` is refused on an address other than loopback unless the
//!   operator says `--insecure`.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use pgwire::api::auth::sasl::scram::{SCRAM_ITERATIONS, ScramAuth, gen_salted_password};
use pgwire::api::auth::sasl::{SASLState, SCRAM_SHA_256_METHOD};
use pgwire::api::auth::{AuthSource, LoginInfo, Password};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::startup::PasswordMessageFamily;
use sluice_engine::roles::RoleCatalog;

/// How clients prove who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuthMethod {
    /// Anyone who can reach the port, as any user (loopback only, unless
    /// `--insecure`).
    #[default]
    Trust,
    /// A password sent in clear text (use with TLS).
    Password,
    /// SCRAM-SHA-256: the password never crosses the wire.
    ScramSha256,
}

impl FromStr for AuthMethod {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text.to_ascii_lowercase().as_str() {
            "trust" => Ok(Self::Trust),
            "password" => Ok(Self::Password),
            "scram-sha-256" => Ok(Self::ScramSha256),
            other => Err(format!(
                "unknown authentication method {other:?} (trust, password or scram-sha-256)"
            )),
        }
    }
}

impl fmt::Display for AuthMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Trust => "trust",
            Self::Password => "password",
            Self::ScramSha256 => "scram-sha-256",
        })
    }
}

/// Refuses `trust` on an address others can reach, unless `insecure`.
pub fn check_listen_policy(
    listen: SocketAddr,
    method: AuthMethod,
    insecure: bool,
) -> Result<(), String> {
    if method == AuthMethod::Trust && !listen.ip().is_loopback() && !insecure {
        return Err(format!(
            "refusing to listen on {listen} with --auth trust: anyone who reaches it could \
             connect as any user; configure --auth scram-sha-256 with --users-file, or pass \
             --insecure"
        ));
    }
    Ok(())
}

/// A user's salted password (SCRAM's `SaltedPassword`) and its salt.
#[derive(Clone)]
struct Secret {
    salt: Vec<u8>,
    salted: Vec<u8>,
}

impl Secret {
    fn new(password: &str) -> Self {
        let salt = rand::random::<[u8; 16]>().to_vec();
        let salted = gen_salted_password(password, &salt, SCRAM_ITERATIONS);
        Self { salt, salted }
    }

    fn matches(&self, password: &str) -> bool {
        gen_salted_password(password, &self.salt, SCRAM_ITERATIONS) == self.salted
    }
}

/// The users who may log in, with their secrets.
#[derive(Clone, Default)]
pub struct Users {
    secrets: HashMap<String, Secret>,
}

impl fmt::Debug for Users {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<&String> = self.secrets.keys().collect();
        names.sort();
        f.debug_struct("Users").field("names", &names).finish()
    }
}

impl Users {
    /// Reads `name:password` lines (blank lines and `#` comments skipped).
    pub fn from_file(path: &std::path::Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read users file {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("users file {}: {e}", path.display()))
    }

    /// Parses the users file's text.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut users = Self::default();
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((name, password)) = line.split_once(':') else {
                return Err(format!("line {}: expected name:password", number + 1));
            };
            users.add(name.trim(), password)?;
        }
        Ok(users)
    }

    /// Adds `name` with `password`.
    pub fn add(&mut self, name: &str, password: &str) -> Result<(), String> {
        if name.is_empty() || password.is_empty() {
            return Err("a user needs a name and a password".into());
        }
        self.secrets.insert(name.to_owned(), Secret::new(password));
        Ok(())
    }

    /// Whether no user is configured.
    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }
}

/// Checks logins for one server.
#[derive(Debug)]
pub struct Authenticator {
    method: AuthMethod,
    source: Arc<UserSecrets>,
    scram: ScramAuth,
}

impl Authenticator {
    /// Checks logins by `method` against `users`, then against the roles
    /// `CREATE ROLE … LOGIN PASSWORD` made (`roles`).
    pub fn new(
        method: AuthMethod,
        users: Users,
        roles: Option<Arc<RoleCatalog>>,
    ) -> Result<Self, String> {
        let has_login_roles = roles.as_ref().is_some_and(|r| r.has_login_roles());
        if method != AuthMethod::Trust && users.is_empty() && !has_login_roles {
            return Err(format!(
                "--auth {method} needs users: give --users-file with name:password lines, or \
                 create roles with CREATE ROLE … LOGIN PASSWORD first"
            ));
        }
        let source = Arc::new(UserSecrets {
            users,
            roles,
            decoy: Secret::new(&format!("{:x}", rand::random::<u128>())),
        });
        let scram = ScramAuth::new(Arc::clone(&source) as Arc<dyn AuthSource>);
        Ok(Self {
            method,
            source,
            scram,
        })
    }

    /// Anyone may connect (the default on loopback).
    pub fn trust() -> Self {
        let source = Arc::new(UserSecrets {
            users: Users::default(),
            roles: None,
            decoy: Secret::new(&format!("{:x}", rand::random::<u128>())),
        });
        let scram = ScramAuth::new(Arc::clone(&source) as Arc<dyn AuthSource>);
        Self {
            method: AuthMethod::Trust,
            source,
            scram,
        }
    }

    /// The method clients must use.
    pub fn method(&self) -> AuthMethod {
        self.method
    }

    /// Checks a clear-text password for `user`.
    pub fn check_password(&self, user: &str, password: &str) -> PgWireResult<()> {
        let (secret, known) = self.source.secret(user);
        let secret = &secret;
        // The decoy is checked too, so an unknown user costs the same.
        if secret.matches(password) && known {
            Ok(())
        } else {
            Err(failed(user))
        }
    }

    /// The SASL mechanisms offered.
    pub fn mechanisms(&self) -> Vec<String> {
        vec![SCRAM_SHA_256_METHOD.to_owned()]
    }

    /// One step of the SCRAM exchange for `client`; `Ok(true)` once it has
    /// succeeded.
    pub async fn scram_step<C>(
        &self,
        client: &C,
        progress: &ScramProgress,
        message: PasswordMessageFamily,
    ) -> PgWireResult<(pgwire::messages::startup::Authentication, bool)>
    where
        C: pgwire::api::ClientInfo + Unpin + Send,
    {
        let user = LoginInfo::from_client_info(client)
            .user()
            .unwrap_or_default()
            .to_owned();
        let state = progress.take();
        let (message, state) = match state {
            SASLState::Initial => {
                let initial = message.into_sasl_initial_response()?;
                if initial.auth_method != SCRAM_SHA_256_METHOD {
                    return Err(PgWireError::UnsupportedSASLAuthMethod(
                        initial.auth_method.clone(),
                    ));
                }
                (
                    PasswordMessageFamily::SASLInitialResponse(initial),
                    SASLState::ScramClientFirstReceived,
                )
            }
            other => (
                PasswordMessageFamily::SASLResponse(message.into_sasl_response()?),
                other,
            ),
        };
        let (reply, next) = self
            .scram
            .process_scram_message(client, message, &state)
            .await
            .map_err(|e| match e {
                PgWireError::InvalidPassword(_) => failed(&user),
                other => other,
            })?;
        let finished = matches!(next, SASLState::Finished);
        if finished && !self.source.knows(&user) {
            // The decoy's exchange cannot succeed without its password,
            // which nobody has; refuse anyway should it ever.
            return Err(failed(&user));
        }
        progress.put(next);
        Ok((reply, finished))
    }
}

/// A failed login: logged, and reported as Postgres does.
fn failed(user: &str) -> PgWireError {
    log::warn!("password authentication failed for user {user:?}");
    // Postgres' own wording (pgwire capitalises it), which clients and
    // scripts match on.
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "FATAL".into(),
        "28P01".into(),
        format!("password authentication failed for user \"{user}\""),
    )))
}

/// The secrets SCRAM reads: a known user's, or the decoy's.
struct UserSecrets {
    users: Users,
    /// The roles of the data directory, read at each login (a role made or
    /// changed a moment ago counts).
    roles: Option<Arc<RoleCatalog>>,
    decoy: Secret,
}

impl fmt::Debug for UserSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserSecrets")
            .field("users", &self.users)
            .finish_non_exhaustive()
    }
}

impl UserSecrets {
    /// `user`'s secret and whether the user is known: the users file
    /// first, then a role that may log in and has a password; else the
    /// decoy's.
    fn secret(&self, user: &str) -> (Secret, bool) {
        if let Some(secret) = self.users.secrets.get(user) {
            return (secret.clone(), true);
        }
        match self.role_secret(user) {
            Some(secret) => (secret, true),
            None => (self.decoy.clone(), false),
        }
    }

    fn role_secret(&self, user: &str) -> Option<Secret> {
        let role = self.roles.as_ref()?.role(user)?;
        if !role.login {
            return None;
        }
        let (salt, salted) = role.password?.decoded()?;
        Some(Secret { salt, salted })
    }

    fn knows(&self, user: &str) -> bool {
        self.secret(user).1
    }
}

#[async_trait]
impl AuthSource for UserSecrets {
    async fn get_password(&self, login: &LoginInfo) -> PgWireResult<Password> {
        let (secret, _) = self.secret(login.user().unwrap_or_default());
        let secret = &secret;
        Ok(Password::new(
            Some(secret.salt.clone()),
            secret.salted.clone(),
        ))
    }
}

/// Where one connection's SCRAM exchange stands (kept with the client
/// between its messages).
#[derive(Default)]
pub struct ScramProgress(Mutex<Option<SASLState>>);

impl ScramProgress {
    fn take(&self) -> SASLState {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .unwrap_or(SASLState::Initial)
    }

    fn put(&self, state: SASLState) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(state);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_file_lines_and_errors() {
        let users = Users::parse("# team\nalice:s3cret:with:colons\n\n bob : pw\n").unwrap();
        assert!(users.secrets["alice"].matches("s3cret:with:colons"));
        assert!(!users.secrets["alice"].matches("s3cret"));
        assert!(users.secrets["bob"].matches(" pw"));
        assert!(Users::parse("nocolon\n").is_err());
        assert!(Users::parse("carol:\n").is_err());
    }

    #[test]
    fn trust_is_refused_off_loopback_unless_insecure() {
        let public: SocketAddr = "0.0.0.0:5433".parse().unwrap();
        let local: SocketAddr = "127.0.0.1:5433".parse().unwrap();
        assert!(check_listen_policy(public, AuthMethod::Trust, false).is_err());
        assert!(check_listen_policy(public, AuthMethod::Trust, true).is_ok());
        assert!(check_listen_policy(public, AuthMethod::ScramSha256, false).is_ok());
        assert!(check_listen_policy(local, AuthMethod::Trust, false).is_ok());
    }

    #[test]
    fn a_method_other_than_trust_needs_users() {
        assert!(Authenticator::new(AuthMethod::Password, Users::default(), None).is_err());
        assert!(Authenticator::new(AuthMethod::Trust, Users::default(), None).is_ok());
        let users = Users::parse("alice:pw").unwrap();
        let auth = Authenticator::new(AuthMethod::Password, users, None).unwrap();
        assert!(auth.check_password("alice", "pw").is_ok());
        assert!(auth.check_password("alice", "nope").is_err());
        assert!(auth.check_password("mallory", "pw").is_err());
    }
}
