//! `pg_roles` (and so psql's `\du`) from Sluice's role catalog, through
//! `datafusion-pg-catalog`'s context provider: the predefined roles, the
//! users the catalog does not list aside.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion_pg_catalog::pg_catalog::context::{PgCatalogContextProvider, Role};

use crate::roles::RoleCatalog;

/// Answers the catalog library's questions about roles.
#[derive(Debug, Clone)]
pub(crate) struct RolesProvider(pub Arc<RoleCatalog>);

#[async_trait]
impl PgCatalogContextProvider for RolesProvider {
    async fn roles(&self) -> Vec<String> {
        self.0.names()
    }

    async fn role(&self, name: &str) -> Option<Role> {
        // A predefined role: no login, no attributes.
        let role = self.0.role(name).unwrap_or_default();
        Some(Role {
            name: name.to_owned(),
            is_superuser: role.superuser,
            can_login: role.login,
            can_create_db: false,
            can_create_role: role.superuser,
            can_create_user: role.superuser,
            can_replication: false,
            grants: Vec::new(),
            inherited_roles: role.member_of.into_iter().collect(),
        })
    }
}
