//! Which environment variables a remote model may read its API key from.
//!
//! `'api_key_env'` names a variable of the *server's* environment, and the
//! key is sent to the model's endpoint, which the client chooses: without a
//! bound any client could have the server send it `AWS_SECRET_ACCESS_KEY`.
//! Only variables the server's operator allowed may be named; the rest are
//! refused at `CREATE MODEL` (and a stored definition naming one does not
//! load).

use datafusion::error::Result;
use sluice_types::error::{SluiceError, SqlState};

/// Variables a key may come from when the operator configures nothing.
pub const DEFAULT_KEY_VARIABLES: &[&str] = &["OPENAI_API_KEY", "SLUICE_MODEL_KEY_*"];

/// The allowed key variables: exact names, or prefixes written `NAME_*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyVariablePolicy {
    patterns: Vec<String>,
}

impl Default for KeyVariablePolicy {
    fn default() -> Self {
        Self::new(DEFAULT_KEY_VARIABLES.iter().copied())
    }
}

impl KeyVariablePolicy {
    /// A policy allowing `patterns` (exact names, or prefixes ending in `*`).
    pub fn new<S: Into<String>>(patterns: impl IntoIterator<Item = S>) -> Self {
        Self {
            patterns: patterns.into_iter().map(Into::into).collect(),
        }
    }

    /// Whether a key may be read from `variable`.
    pub fn allows(&self, variable: &str) -> bool {
        self.patterns
            .iter()
            .any(|pattern| match pattern.strip_suffix('*') {
                Some(prefix) => variable.starts_with(prefix) && variable.len() > prefix.len(),
                None => pattern == variable,
            })
    }

    /// Refuses a variable the policy does not allow, naming what is
    /// allowed (never the variable's value).
    pub fn check(&self, variable: &str) -> Result<()> {
        if self.allows(variable) {
            return Ok(());
        }
        Err(SluiceError::new(
            SqlState::INSUFFICIENT_PRIVILEGE,
            format!(
                "model option 'api_key_env' may not name {variable}: the server reads API keys \
                 only from {} (sluice serve --model-key-env adds more)",
                self.patterns.join(", ")
            ),
        )
        .into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_policy_allows_only_model_keys() {
        let policy = KeyVariablePolicy::default();
        assert!(policy.allows("OPENAI_API_KEY"));
        assert!(policy.allows("SLUICE_MODEL_KEY_ADA"));
        assert!(!policy.allows("SLUICE_MODEL_KEY_"));
        assert!(!policy.allows("HOME"));
        assert!(!policy.allows("AWS_SECRET_ACCESS_KEY"));
        assert!(!policy.allows("OPENAI_API_KEY_2"));
        let err = policy.check("HOME").expect_err("refused");
        assert_eq!(
            SluiceError::find(&err).map(|e| e.sqlstate),
            Some(SqlState::INSUFFICIENT_PRIVILEGE)
        );
    }

    #[test]
    fn operators_add_names_and_prefixes() {
        let policy = KeyVariablePolicy::new(["MY_KEY", "TEAM_*"]);
        assert!(policy.allows("MY_KEY"));
        assert!(policy.allows("TEAM_A"));
        assert!(!policy.allows("OPENAI_API_KEY"));
    }
}
