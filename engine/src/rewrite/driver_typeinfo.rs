//! asyncpg's type introspection, decorrelated.
//!
//! asyncpg decodes only a few types on its own; for any other (every array
//! but `oid[]` and `text[]`, every Sluice type) it runs a recursive query
//! over a derived table of type facts. That derived table computes three
//! of its columns with correlated scalar subqueries inside `CASE`: a
//! domain's base type (itself a recursive CTE) and a composite type's
//! attribute types and names (`array_agg` over `pg_attribute`). DataFusion
//! decorrelates none of them ("Physical plan does not support logical
//! expression ScalarSubquery"), so every such result failed in asyncpg.
//!
//! The derived table is recognised by its shape (over `pg_type`, exactly
//! asyncpg's ten column names in order) and replaced by an equivalent one
//! written with joins: attributes aggregated per row type and joined on
//! `reltype`, a domain's base type read from `typbasetype`. The latter is
//! one step of asyncpg's walk down a chain of domains, which is the whole
//! walk here: Sluice's domains (its own types) are over base types, and
//! there is no `CREATE DOMAIN`. The surrounding recursive CTE plans as
//! written.

use std::ops::ControlFlow;
use std::sync::OnceLock;

use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{
    Query, SelectItem, SetExpr, TableFactor, VisitMut, VisitorMut,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;

/// The columns of asyncpg's derived table, in its order.
const COLUMNS: [&str; 10] = [
    "oid",
    "ns",
    "name",
    "kind",
    "basetype",
    "elemtype",
    "elemdelim",
    "range_subtype",
    "attrtypoids",
    "attrnames",
];

/// The same facts without correlated subqueries.
const DECORRELATED: &str = "\
SELECT t.oid AS oid, ns.nspname AS ns, t.typname AS name, t.typtype AS kind, \
    CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE NULL END AS basetype, \
    t.typelem AS elemtype, elem_t.typdelim AS elemdelim, range_t.rngsubtype AS range_subtype, \
    CASE WHEN t.typtype = 'c' THEN attrs.attrtypoids ELSE NULL END AS attrtypoids, \
    CASE WHEN t.typtype = 'c' THEN attrs.attrnames ELSE NULL END AS attrnames \
FROM pg_catalog.pg_type AS t \
    INNER JOIN pg_catalog.pg_namespace AS ns ON ns.oid = t.typnamespace \
    LEFT JOIN pg_catalog.pg_type AS elem_t \
        ON t.typlen = -1 AND t.typelem <> 0 AND t.typelem = elem_t.oid \
    LEFT JOIN pg_catalog.pg_range AS range_t ON t.oid = range_t.rngtypid \
    LEFT JOIN ( \
        SELECT c.reltype AS reltype, \
            array_agg(ia.atttypid ORDER BY ia.attnum) AS attrtypoids, \
            array_agg(ia.attname::text ORDER BY ia.attnum) AS attrnames \
        FROM pg_catalog.pg_attribute AS ia \
            INNER JOIN pg_catalog.pg_class AS c ON ia.attrelid = c.oid \
        WHERE ia.attnum > 0 AND NOT ia.attisdropped \
        GROUP BY c.reltype \
    ) AS attrs ON attrs.reltype = t.oid";

/// Replaces every asyncpg type-facts table in `statement`.
pub(crate) fn rewrite(statement: &mut DFStatement) {
    let Some(sql) = super::sql_statement(statement) else {
        return;
    };
    let Some(replacement) = decorrelated() else {
        return;
    };
    let _ = sql.visit(&mut TypeFacts { replacement });
}

/// [`DECORRELATED`], parsed once.
fn decorrelated() -> Option<&'static Query> {
    static QUERY: OnceLock<Option<Query>> = OnceLock::new();
    QUERY
        .get_or_init(|| {
            Parser::new(&PostgreSqlDialect {})
                .try_with_sql(DECORRELATED)
                .and_then(|mut parser| parser.parse_query())
                .ok()
                .map(|query| *query)
        })
        .as_ref()
}

struct TypeFacts {
    replacement: &'static Query,
}

impl VisitorMut for TypeFacts {
    type Break = ();

    fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
        if let TableFactor::Derived { subquery, .. } = factor
            && is_asyncpg_type_facts(subquery)
        {
            **subquery = self.replacement.clone();
        }
        ControlFlow::Continue(())
    }
}

/// A SELECT over `pg_type` naming exactly asyncpg's columns.
fn is_asyncpg_type_facts(query: &Query) -> bool {
    let SetExpr::Select(select) = query.body.as_ref() else {
        return false;
    };
    let names_match = select.projection.len() == COLUMNS.len()
        && select.projection.iter().zip(COLUMNS).all(|(item, wanted)| {
            matches!(item, SelectItem::ExprWithAlias { alias, .. }
                    if alias.value.eq_ignore_ascii_case(wanted))
        });
    let over_pg_type = select.from.first().is_some_and(|from| {
        matches!(&from.relation, TableFactor::Table { name, .. }
            if name.0.last().and_then(|part| part.as_ident())
                .is_some_and(|ident| ident.value.eq_ignore_ascii_case("pg_type")))
    });
    names_match && over_pg_type
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_replacement_parses_and_keeps_the_columns() {
        let query = decorrelated().expect("the decorrelated query parses");
        assert!(is_asyncpg_type_facts(query));
    }

    #[test]
    fn only_the_type_facts_table_is_replaced() {
        let correlated = "SELECT * FROM (SELECT t.oid AS oid, 'n' AS ns, t.typname AS name, \
            t.typtype AS kind, (SELECT 1) AS basetype, t.typelem AS elemtype, ',' AS elemdelim, \
            NULL AS range_subtype, (SELECT 2) AS attrtypoids, NULL AS attrnames \
            FROM pg_catalog.pg_type AS t) AS ti WHERE ti.oid = 23";
        let rewritten = super::super::rewritten_by(correlated, rewrite);
        assert!(rewritten.contains("GROUP BY c.reltype"), "{rewritten}");
        assert!(
            rewritten.ends_with("AS ti WHERE ti.oid = 23"),
            "{rewritten}"
        );

        // Another derived table over pg_type stays as written.
        let other = "SELECT * FROM (SELECT t.oid AS oid FROM pg_type AS t) AS x";
        assert_eq!(super::super::rewritten_by(other, rewrite), other);
    }
}
