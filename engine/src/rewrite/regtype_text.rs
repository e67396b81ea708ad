//! `x::regtype::text` as the type's name, as Postgres writes it.
//!
//! The pg_catalog layer plans `regtype` as a plain `int4` (a cast that
//! changes nothing), so the cast to text wrote the OID's digits (`23`)
//! where Postgres writes `integer`, under the field metadata of an `oid`
//! column: clients reading the column in binary took the digits for a
//! four-byte oid (asyncpg's type introspection reads
//! `elemtype::regtype::text` and failed with "insufficient data"). The
//! rewrite calls `format_type(x, NULL)` instead, which gives `regtype`'s
//! output: the type's name, `-` for no type.

use std::ops::ControlFlow;

use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{
    CastKind, DataType, Expr, ObjectName, ObjectNamePart, Value, visit_expressions_mut,
};

use crate::sql::calls::function_call;

/// Rewrites every `x::regtype::text` (any cast syntax, to `text` or
/// `varchar`) in `statement`.
pub(crate) fn rewrite(statement: &mut DFStatement) {
    if let Some(sql) = super::sql_statement(statement) {
        let _ = visit_expressions_mut(sql, |expr: &mut Expr| {
            if let Some(oid) = regtype_as_text(expr) {
                *expr = format_type(oid);
            }
            ControlFlow::<()>::Continue(())
        });
    }
}

/// The OID expression of `oid::regtype::text`.
fn regtype_as_text(expr: &Expr) -> Option<Expr> {
    let Expr::Cast {
        kind: CastKind::Cast | CastKind::DoubleColon,
        expr: inner,
        data_type: DataType::Text | DataType::Varchar(None),
        array: false,
        format: None,
    } = expr
    else {
        return None;
    };
    match inner.as_ref() {
        Expr::Cast {
            kind: CastKind::Cast | CastKind::DoubleColon,
            expr: oid,
            data_type: DataType::Custom(name, modifiers),
            array: false,
            format: None,
        } if modifiers.is_empty() && is_regtype(name) => Some(oid.as_ref().clone()),
        _ => None,
    }
}

/// `regtype` or `pg_catalog.regtype`.
fn is_regtype(name: &ObjectName) -> bool {
    let last_is_regtype = name
        .0
        .last()
        .and_then(ObjectNamePart::as_ident)
        .is_some_and(|ident| ident.value.eq_ignore_ascii_case("regtype"));
    let schema_ok = match name.0.as_slice() {
        [_] => true,
        [schema, _] => schema
            .as_ident()
            .is_some_and(|ident| ident.value.eq_ignore_ascii_case("pg_catalog")),
        _ => false,
    };
    last_is_regtype && schema_ok
}

/// `format_type(oid, NULL)` (unqualified: the compatibility parser strips
/// `pg_catalog.` from function names before these rewrites run).
fn format_type(oid: Expr) -> Expr {
    function_call("format_type", vec![oid, Expr::value(Value::Null)])
}

#[cfg(test)]
mod tests {
    use super::super::rewritten_by;
    use super::*;

    #[test]
    fn regtype_text_becomes_format_type() {
        assert_eq!(
            rewritten_by("SELECT elemtype::regtype::text AS n FROM t", rewrite),
            "SELECT format_type(elemtype, NULL) AS n FROM t"
        );
        assert_eq!(
            rewritten_by(
                "SELECT CAST(CAST(x AS pg_catalog.regtype) AS varchar) FROM t",
                rewrite
            ),
            "SELECT format_type(x, NULL) FROM t"
        );
    }

    #[test]
    fn other_casts_stay() {
        for sql in [
            "SELECT x::regtype FROM t",
            "SELECT x::regclass::text FROM t",
            "SELECT x::int::text FROM t",
        ] {
            assert_eq!(rewritten_by(sql, rewrite), rewritten_by(sql, |_| {}));
        }
    }
}
