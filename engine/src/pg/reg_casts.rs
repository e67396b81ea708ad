//! Casts of strings to the OID alias types Sluice reads itself:
//! `'t'::regclass` as `regclassin('t')::regclass` ([`crate::pg::regclass`])
//! and `'integer'::regtype` as `regtypein('integer')::regtype`
//! ([`crate::pg::regtype`]), and `'now'::regproc` as
//! `regprocin('now')::regproc` ([`crate::pg::regproc`]); `regnamespace`
//! stays the catalog library's.
//!
//! The cast stays around the lookup (a no-op: the alias types are int4
//! OIDs here) so the result column keeps Postgres' name
//! ([`crate::pg::column_names`] names the lookups like the literals they
//! stand for).

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    DataType, Expr, Function, FunctionArg, FunctionArgExpr, FunctionArgumentList,
    FunctionArguments, Ident, ObjectName, ObjectNamePart, Statement, Value, visit_expressions_mut,
};

use crate::pg::regclass::REGCLASS_IN;
use crate::pg::regproc::REGPROC_IN;
use crate::pg::regtype::REGTYPE_IN;

/// The lookup functions the rewritten casts call.
pub(crate) const LOOKUPS: [&str; 3] = [REGCLASS_IN, REGTYPE_IN, REGPROC_IN];

/// Rewrites the casts of strings to `regclass`, `regtype` and `regproc` in `statement`
/// into lookups; whether it had any. This runs on the statement as written
/// (in the planner) and, for a client's catalog query, before the catalog
/// library's rules (in the statement parser), whose own reading of these
/// casts finds only the current schema's relations and only catalog type
/// names.
pub(crate) fn rewrite_casts(statement: &mut Statement) -> bool {
    let mut found = false;
    let _ = visit_expressions_mut(statement, |expr: &mut Expr| {
        if let Expr::Cast {
            expr: operand,
            data_type,
            ..
        } = expr
            && let Some(lookup) = lookup_for(data_type)
            && matches!(
                operand.as_ref(),
                Expr::Value(v) if matches!(v.value, Value::SingleQuotedString(_))
            )
        {
            **operand = lookup_call(lookup, (**operand).clone());
            found = true;
        }
        ControlFlow::<()>::Continue(())
    });
    found
}

/// `lookup(name)`: a call of one of [`LOOKUPS`] on a name (a string).
pub(crate) fn lookup_call(lookup: &str, name: Expr) -> Expr {
    Expr::Function(Function {
        name: ObjectName::from(vec![Ident::new(lookup)]),
        uses_odbc_syntax: false,
        parameters: FunctionArguments::None,
        args: FunctionArguments::List(FunctionArgumentList {
            duplicate_treatment: None,
            args: vec![FunctionArg::Unnamed(FunctionArgExpr::Expr(name))],
            clauses: vec![],
        }),
        filter: None,
        null_treatment: None,
        over: None,
        within_group: vec![],
    })
}

/// The lookup a cast to `data_type` becomes, if it is one Sluice reads.
fn lookup_for(data_type: &DataType) -> Option<&'static str> {
    match data_type {
        DataType::Regclass => Some(REGCLASS_IN),
        DataType::Custom(name, modifiers) if modifiers.is_empty() => {
            let parts: Vec<String> = name
                .0
                .iter()
                .filter_map(ObjectNamePart::as_ident)
                .map(|i| i.value.to_ascii_lowercase())
                .collect();
            let bare = match parts.as_slice() {
                [bare] => bare.as_str(),
                [schema, bare] if schema == "pg_catalog" => bare.as_str(),
                _ => return None,
            };
            match bare {
                "regclass" => Some(REGCLASS_IN),
                "regtype" => Some(REGTYPE_IN),
                "regproc" => Some(REGPROC_IN),
                _ => None,
            }
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    use super::*;

    fn rewritten(sql: &str) -> String {
        let mut statements = Parser::parse_sql(&PostgreSqlDialect {}, sql).unwrap();
        rewrite_casts(&mut statements[0]);
        statements[0].to_string()
    }

    #[test]
    fn string_casts_become_lookups() {
        assert_eq!(
            rewritten("SELECT 'pg_class'::regclass, CAST('t' AS pg_catalog.regclass)"),
            "SELECT regclassin('pg_class')::REGCLASS, CAST(regclassin('t') AS pg_catalog.regclass)"
        );
        assert_eq!(
            rewritten("SELECT c.oid::regclass FROM c WHERE c.oid = 'public.t'::regclass"),
            "SELECT c.oid::REGCLASS FROM c WHERE c.oid = regclassin('public.t')::REGCLASS"
        );
        assert_eq!(
            rewritten("SELECT 'integer'::regtype, t.x::regtype, 'abs'::regproc, 'x'::regrole"),
            "SELECT regtypein('integer')::regtype, t.x::regtype, regprocin('abs')::regproc, 'x'::regrole"
        );
    }
}
