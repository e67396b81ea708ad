//! [`RoleCatalog`]: the roles `CREATE ROLE` made, kept in the data
//! directory (`catalog/roles.json`), with their passwords as SCRAM-SHA-256
//! salted passwords, never in clear.
//!
//! Why salted passwords and not Postgres' `StoredKey`/`ServerKey`
//! verifiers: the server authenticates with pgwire's SCRAM exchange, which
//! reads a user's salted password; storing what it reads is the only way to
//! use it. A stolen catalog file still does not give the password itself
//! (4096 rounds of PBKDF2-SHA-256 over a random salt stand between them).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use datafusion::error::{DataFusionError, Result};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use pgwire::api::auth::sasl::scram::{SCRAM_ITERATIONS, gen_salted_password};
use serde::{Deserialize, Serialize};

use super::privileges::{PREDEFINED_ROLES, Privilege};
use crate::storage::storage_error;

/// Where the roles are kept, under the data directory's root.
const ROLES_OBJECT: [&str; 2] = ["catalog", "roles.json"];

/// A password as SCRAM keeps it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PasswordSecret {
    /// The random salt, base64.
    pub salt: String,
    /// PBKDF2-SHA-256 of the password over the salt, base64.
    pub salted_password: String,
    /// PBKDF2 rounds.
    pub iterations: usize,
}

impl PasswordSecret {
    /// The secret of `password` under a new random salt.
    pub fn new(password: &str) -> Self {
        let salt = rand::random::<[u8; 16]>();
        Self {
            salt: STANDARD.encode(salt),
            salted_password: STANDARD.encode(gen_salted_password(
                password,
                &salt,
                SCRAM_ITERATIONS,
            )),
            iterations: SCRAM_ITERATIONS,
        }
    }

    /// The salt and salted password as bytes (what SCRAM reads).
    pub fn decoded(&self) -> Option<(Vec<u8>, Vec<u8>)> {
        Some((
            STANDARD.decode(&self.salt).ok()?,
            STANDARD.decode(&self.salted_password).ok()?,
        ))
    }
}

/// One role.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Role {
    /// May log in (`LOGIN`; `CREATE USER` implies it).
    pub login: bool,
    /// May do everything (`SUPERUSER`).
    pub superuser: bool,
    /// Its password, if it has one.
    pub password: Option<PasswordSecret>,
    /// The roles it was granted (`GRANT pg_read_server_files TO …`).
    pub member_of: BTreeSet<String>,
}

/// The roles of one data directory, shared by every session and by the
/// server's authentication.
#[derive(Debug)]
pub struct RoleCatalog {
    store: Arc<dyn ObjectStore>,
    path: Path,
    roles: RwLock<BTreeMap<String, Role>>,
}

impl RoleCatalog {
    /// Reads the roles of the data directory at `root` of `store`.
    pub async fn open(store: Arc<dyn ObjectStore>, root: &Path) -> Result<Arc<Self>> {
        let path = ROLES_OBJECT
            .iter()
            .fold(root.clone(), |path, part| path.join(*part));
        let roles = match store.get(&path).await {
            Ok(found) => {
                let body = found.bytes().await.map_err(storage_error)?;
                serde_json::from_slice(&body).map_err(|e| {
                    DataFusionError::Execution(format!(
                        "the role catalog {path} is unreadable: {e}"
                    ))
                })?
            }
            Err(object_store::Error::NotFound { .. }) => BTreeMap::new(),
            Err(e) => return Err(storage_error(e)),
        };
        Ok(Arc::new(Self {
            store,
            path,
            roles: RwLock::new(roles),
        }))
    }

    /// An empty catalog kept in memory only, for tests.
    #[cfg(test)]
    pub(crate) fn in_memory() -> Arc<Self> {
        Arc::new(Self {
            store: Arc::new(object_store::memory::InMemory::new()),
            path: Path::from("roles.json"),
            roles: RwLock::new(BTreeMap::new()),
        })
    }

    fn read(&self) -> RwLockReadGuard<'_, BTreeMap<String, Role>> {
        self.roles.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, BTreeMap<String, Role>> {
        self.roles.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The role called `name`, if the catalog has it.
    pub fn role(&self, name: &str) -> Option<Role> {
        self.read().get(name).cloned()
    }

    /// Whether some role may log in with a password.
    pub fn has_login_roles(&self) -> bool {
        self.read()
            .values()
            .any(|role| role.login && role.password.is_some())
    }

    /// Whether `name` is a role here or a predefined one.
    pub fn exists(&self, name: &str) -> bool {
        PREDEFINED_ROLES.iter().any(|(role, _)| *role == name) || self.read().contains_key(name)
    }

    /// The names of every role, predefined ones first.
    pub fn names(&self) -> Vec<String> {
        PREDEFINED_ROLES
            .iter()
            .map(|(name, _)| (*name).to_owned())
            .chain(self.read().keys().cloned())
            .collect()
    }

    /// Changes the roles with `change`, then stores them; nothing changes
    /// when storing fails.
    pub async fn update<T>(
        &self,
        change: impl FnOnce(&mut BTreeMap<String, Role>) -> Result<T>,
    ) -> Result<T> {
        let (result, next) = {
            let mut next = self.read().clone();
            let result = change(&mut next)?;
            (result, next)
        };
        let body = serde_json::to_vec_pretty(&next)
            .map_err(|e| DataFusionError::Internal(format!("cannot serialise roles: {e}")))?;
        self.store
            .put(&self.path, PutPayload::from(body))
            .await
            .map_err(storage_error)?;
        *self.write() = next;
        Ok(result)
    }

    /// Whether `user` is a role of this catalog without SUPERUSER: the
    /// only users some privilege may be refused to (see [`Self::holds`]).
    pub fn is_restricted(&self, user: &str) -> bool {
        self.read().get(user).is_some_and(|role| !role.superuser)
    }

    /// Whether `user` holds `privilege`: a superuser holds every one; a
    /// user the catalog does not know (the `--users-file` users, and in
    /// `trust` mode anyone) is a superuser, as the operator configured it.
    pub fn holds(&self, user: &str, privilege: Privilege) -> bool {
        let roles = self.read();
        let Some(role) = roles.get(user) else {
            return true;
        };
        role.superuser
            || role
                .member_of
                .iter()
                .any(|granted| grants(granted, privilege))
    }
}

/// Whether membership of the predefined role `granted` gives `privilege`.
fn grants(granted: &str, privilege: Privilege) -> bool {
    PREDEFINED_ROLES
        .iter()
        .any(|(name, given)| *name == granted && *given == privilege)
}
