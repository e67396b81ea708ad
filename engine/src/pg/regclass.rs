//! Relation names as OIDs, as Postgres' `regclass` input reads them:
//! `regclassin(text)`, what `'t'::regclass` becomes
//! ([`crate::pg::reg_casts`]), and `to_regclass(text)`.
//!
//! A name is `rel`, `schema.rel` or `database.schema.rel`, each part
//! folded to lower case unless double-quoted; an unqualified name is looked
//! up in `pg_catalog`, then in the current schema, as Postgres' search path
//! does. A string of digits is an OID already. `regclassin` refuses a name
//! that names nothing (42P01, `relation "x" does not exist`),
//! `to_regclass` answers NULL.
//!
//! The library's own reading of `'t'::regclass` is a subquery that finds
//! only relations of the current schema (`'pg_class'::regclass` fails) and
//! fails with a planning error, not 42P01, for a missing one.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::catalog::CatalogProviderList;
use datafusion::error::Result;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::prelude::SessionContext;
use sluice_types::error::{SluiceError, SqlState};

use crate::context::{DEFAULT_CATALOG, DEFAULT_SCHEMA};
use crate::pg::catalog_rows::{Shared, oids_by_name};
use crate::pg::relations_catalog::{RelationDetails, SluiceRelations};
use crate::pg::stable_oids::relation_oid;

/// The function `'name'::regclass` is planned as.
pub const REGCLASS_IN: &str = "regclassin";

/// Registers `regclassin` and `to_regclass` on `ctx`; `system` gives the
/// OIDs of `pg_catalog`'s own tables and views.
pub(crate) fn install(
    ctx: &SessionContext,
    catalogs: Arc<dyn CatalogProviderList>,
    details: Arc<dyn RelationDetails>,
    system: Arc<HashMap<String, u32>>,
) {
    let relations = Arc::new(Relations {
        catalogs,
        details,
        system,
    });
    for strict in [true, false] {
        ctx.register_udf(ScalarUDF::new_from_impl(RegclassIn {
            strict,
            relations: Shared(Arc::clone(&relations)),
            signature: Signature::string(1, Volatility::Stable),
        }));
    }
}

/// Where relation names are looked up.
#[derive(Debug)]
struct Relations {
    catalogs: Arc<dyn CatalogProviderList>,
    details: Arc<dyn RelationDetails>,
    /// `pg_catalog`'s tables and views with Postgres' OIDs.
    system: Arc<HashMap<String, u32>>,
}

impl Relations {
    /// The OID of the relation `text` names, if one exists.
    fn resolve(&self, text: &str) -> Result<Option<u32>> {
        if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
            return Ok(text.parse().ok());
        }
        let parts = name_parts(text).ok_or_else(|| {
            SluiceError::new(
                SqlState::INVALID_NAME,
                format!("invalid name syntax: \"{text}\""),
            )
        })?;
        let (schema, name) = match parts.as_slice() {
            [name] => (None, name.as_str()),
            [schema, name] => (Some(schema.as_str()), name.as_str()),
            [database, schema, name] if database == DEFAULT_CATALOG => {
                (Some(schema.as_str()), name.as_str())
            }
            _ => return Ok(None),
        };
        let searched = match schema {
            Some(schema) => vec![schema],
            None => vec!["pg_catalog", DEFAULT_SCHEMA],
        };
        for schema in searched {
            if let Some(oid) = self.in_schema(schema, name) {
                return Ok(Some(oid));
            }
        }
        Ok(None)
    }

    /// The OID of relation `name` of `schema`: a system catalog's own, a
    /// table's or view's stable OID, or an index's.
    fn in_schema(&self, schema: &str, name: &str) -> Option<u32> {
        if schema == "pg_catalog"
            && let Some(oid) = self.system.get(name)
        {
            return Some(*oid);
        }
        let catalog = self.catalogs.catalog(DEFAULT_CATALOG)?;
        if catalog.schema(schema).is_some_and(|s| s.table_exist(name)) {
            return Some(relation_oid(schema, name));
        }
        SluiceRelations::gather(self.catalogs.as_ref(), self.details.as_ref())
            .indexes
            .iter()
            .find(|index| index.schema == schema && index.detail.name == name)
            .map(|index| index.oid)
    }
}

/// The parts of a dotted name, unquoted parts folded to lower case; `None`
/// for a malformed one (an empty part, an unclosed quote).
pub(crate) fn name_parts(text: &str) -> Option<Vec<String>> {
    let mut parts = Vec::new();
    let mut chars = text.trim().chars().peekable();
    loop {
        let mut part = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next()? {
                    '"' if chars.peek() == Some(&'"') => {
                        chars.next();
                        part.push('"');
                    }
                    '"' => break,
                    c => part.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == '.' {
                    break;
                }
                part.extend(c.to_lowercase());
                chars.next();
            }
            if part.trim().is_empty() {
                return None;
            }
            part = part.trim().to_owned();
        }
        parts.push(part);
        match chars.next() {
            None => return Some(parts),
            Some('.') => continue,
            Some(_) => return None,
        }
    }
}

/// `regclassin(name)` (strict: a missing relation is an error) or
/// `to_regclass(name)` (NULL for it).
#[derive(Debug, PartialEq, Eq, Hash)]
struct RegclassIn {
    strict: bool,
    relations: Shared<Relations>,
    signature: Signature,
}

impl ScalarUDFImpl for RegclassIn {
    fn name(&self) -> &str {
        if self.strict {
            REGCLASS_IN
        } else {
            "to_regclass"
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Int32)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        oids_by_name(&args, |name| {
            let oid = match self.relations.resolve(name) {
                Ok(oid) => oid,
                Err(_) if !self.strict => None,
                Err(error) => return Err(error),
            };
            if oid.is_none() && self.strict {
                return Err(SluiceError::new(
                    SqlState::UNDEFINED_TABLE,
                    format!("relation \"{name}\" does not exist"),
                )
                .into());
            }
            Ok(oid)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_split_fold_and_keep_quoted_parts() {
        assert_eq!(
            name_parts("Public.Docs"),
            Some(vec!["public".into(), "docs".into()])
        );
        assert_eq!(
            name_parts("\"My \"\"Table\"\"\""),
            Some(vec!["My \"Table\"".into()])
        );
        assert_eq!(name_parts("a..b"), None);
        assert_eq!(name_parts("\"open"), None);
        assert_eq!(name_parts(""), None);
    }
}
