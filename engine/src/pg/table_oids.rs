//! The `tableoid` system column of `pg_catalog` tables, which psql joins
//! comments on (`d.classoid = l.tableoid` in `\dL`): `l.tableoid` becomes
//! `regclassin('pg_catalog.pg_language')`, the table's own OID
//! ([`crate::pg::regclass`]). DataFusion's tables have no system columns;
//! a catalog table's `tableoid` is the same on every row, so a lookup of
//! its name is all the column holds.
//!
//! Only a qualified `alias.tableoid` is read, where `alias` names a
//! `pg_catalog` table (as `pg_x` or `pg_catalog.pg_x`) in the FROM of its
//! SELECT or of one around it: a user's table keeps its column of that
//! name, if it has one.

use std::collections::HashMap;
use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    Expr, ObjectNamePart, Query, Select, SetExpr, Statement, TableFactor, TableWithJoins, Value,
    VisitMut, VisitorMut, visit_expressions_mut,
};

use crate::pg::reg_casts::lookup_call;
use crate::pg::regclass::REGCLASS_IN;

/// Rewrites every `alias.tableoid` of a `pg_catalog` table in `statement`;
/// whether it had any.
pub(crate) fn rewrite_table_oids(statement: &mut Statement) -> bool {
    let mut rewriter = TableOids { found: false };
    let _ = statement.visit(&mut rewriter);
    rewriter.found
}

/// Rewrites each query's SELECTs once its nested queries are done: an
/// alias is read in the SELECT whose FROM names it, and what is left in a
/// nested query (a correlated `outer.tableoid`) in the SELECT around it.
struct TableOids {
    found: bool,
}

impl VisitorMut for TableOids {
    type Break = ();

    fn post_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        self.rewrite_set_expr(query.body.as_mut());
        ControlFlow::Continue(())
    }
}

impl TableOids {
    fn rewrite_set_expr(&mut self, body: &mut SetExpr) {
        match body {
            SetExpr::Select(select) => self.rewrite_select(select),
            SetExpr::SetOperation { left, right, .. } => {
                self.rewrite_set_expr(left);
                self.rewrite_set_expr(right);
            }
            _ => {}
        }
    }

    fn rewrite_select(&mut self, select: &mut Select) {
        let mut tables = HashMap::new();
        for from in &select.from {
            catalog_tables(from, &mut tables);
        }
        if tables.values().all(Option::is_none) {
            return;
        }
        let _ = visit_expressions_mut(select, |expr: &mut Expr| {
            if let Expr::CompoundIdentifier(parts) = expr
                && let [alias, column] = parts.as_slice()
                && column.value.eq_ignore_ascii_case("tableoid")
                && let Some(Some(table)) = tables.get(&alias.value.to_ascii_lowercase())
            {
                *expr = lookup(table);
                self.found = true;
            }
            ControlFlow::<()>::Continue(())
        });
    }
}

/// Adds the tables of `from` to `tables`, by the name or alias the SELECT
/// calls them: the `pg_catalog` table's name, or `None` for a user's table
/// (or a subquery), whose `tableoid` is not the catalog's.
fn catalog_tables(from: &TableWithJoins, tables: &mut HashMap<String, Option<String>>) {
    for factor in std::iter::once(&from.relation).chain(from.joins.iter().map(|j| &j.relation)) {
        match factor {
            TableFactor::Table { name, alias, .. } => {
                let parts: Vec<String> = name
                    .0
                    .iter()
                    .filter_map(ObjectNamePart::as_ident)
                    .map(|i| i.value.to_ascii_lowercase())
                    .collect();
                let in_catalog = match parts.as_slice() {
                    [_] => true,
                    [.., schema, _] => schema == "pg_catalog",
                    [] => false,
                };
                let table = parts
                    .last()
                    .filter(|t| in_catalog && t.starts_with("pg_"))
                    .cloned();
                let called = match (alias, parts.last()) {
                    (Some(alias), _) => alias.name.value.to_ascii_lowercase(),
                    (None, Some(last)) => last.clone(),
                    (None, None) => continue,
                };
                tables.insert(called, table);
            }
            TableFactor::NestedJoin {
                table_with_joins, ..
            } => catalog_tables(table_with_joins, tables),
            TableFactor::Derived {
                alias: Some(alias), ..
            } => {
                tables.insert(alias.name.value.to_ascii_lowercase(), None);
            }
            _ => {}
        }
    }
}

/// `regclassin('pg_catalog.<table>')`.
fn lookup(table: &str) -> Expr {
    lookup_call(
        REGCLASS_IN,
        Expr::value(Value::SingleQuotedString(format!("pg_catalog.{table}"))),
    )
}

#[cfg(test)]
mod tests {
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    use super::*;

    fn rewritten(sql: &str) -> (String, bool) {
        let mut statements = Parser::parse_sql(&PostgreSqlDialect {}, sql).unwrap();
        let found = rewrite_table_oids(&mut statements[0]);
        (statements[0].to_string(), found)
    }

    #[test]
    fn catalog_tables_oid_is_a_lookup_of_their_name() {
        assert_eq!(
            rewritten(
                "SELECT l.lanname FROM pg_catalog.pg_language l LEFT JOIN pg_catalog.pg_description d \
                 ON d.classoid = l.tableoid AND d.objoid = l.oid"
            ),
            (
                "SELECT l.lanname FROM pg_catalog.pg_language l LEFT JOIN pg_catalog.pg_description d \
                 ON d.classoid = regclassin('pg_catalog.pg_language') AND d.objoid = l.oid"
                    .to_owned(),
                true
            )
        );
        assert_eq!(
            rewritten("SELECT pg_class.tableoid FROM pg_class").0,
            "SELECT regclassin('pg_catalog.pg_class') FROM pg_class"
        );
    }

    #[test]
    fn each_select_reads_its_own_aliases() {
        // psql's `\dd`: `t` is pg_type in one branch, pg_trigger in another.
        assert_eq!(
            rewritten(
                "SELECT tt.tableoid FROM (SELECT t.tableoid FROM pg_catalog.pg_type t \
                 UNION ALL SELECT t.tableoid FROM pg_catalog.pg_trigger t) AS tt"
            )
            .0,
            "SELECT tt.tableoid FROM (SELECT regclassin('pg_catalog.pg_type') FROM pg_catalog.pg_type t \
             UNION ALL SELECT regclassin('pg_catalog.pg_trigger') FROM pg_catalog.pg_trigger t) AS tt"
        );
        // A correlated reference is read in the SELECT that names the table.
        assert_eq!(
            rewritten(
                "SELECT (SELECT d.description FROM pg_description d WHERE d.classoid = c.tableoid) FROM pg_class c"
            )
            .0,
            "SELECT (SELECT d.description FROM pg_description d WHERE d.classoid = regclassin('pg_catalog.pg_class')) FROM pg_class c"
        );
    }

    #[test]
    fn user_tables_keep_their_columns() {
        assert!(!rewritten("SELECT t.tableoid FROM t").1);
        assert!(!rewritten("SELECT p.tableoid FROM myschema.pg_things p").1);
        assert!(!rewritten("SELECT x.tableoid FROM pg_class c, t x").1);
    }
}
