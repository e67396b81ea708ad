//! Postgres' search path always starts at `pg_catalog`: `SELECT * FROM
//! pg_class` or `FROM pg_matviews` work unqualified, and tools send them so.
//! DataFusion resolves an unqualified name in the default schema only, so
//! this rewrite qualifies a one-part table name with `pg_catalog` when
//! `pg_catalog` has that table and the session's default schema does not
//! (a user's own table of the same name still wins, as Sluice has always
//! resolved it). Only queries are rewritten: a name that CREATE, INSERT or
//! DROP gives is the user's to define.

use std::collections::HashSet;
use std::ops::ControlFlow;

use datafusion::prelude::SessionContext;
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{
    Ident, ObjectName, ObjectNamePart, Query, visit_relations_mut,
};

/// The schema Postgres searches first.
const PG_CATALOG: &str = "pg_catalog";

/// Qualifies the one-part names in `statement` that only `pg_catalog` has.
pub(crate) fn qualify(statement: &mut DFStatement, ctx: &SessionContext) {
    // Queries only: the name a CREATE, INSERT or DROP gives is the user's.
    let Some(sql @ datafusion::sql::sqlparser::ast::Statement::Query(_)) =
        super::sql_statement(statement)
    else {
        return;
    };
    let state = ctx.state();
    let defaults = &state.config_options().catalog;
    let Some(catalog) = ctx.catalog(&defaults.default_catalog) else {
        return;
    };
    let (Some(pg_catalog), default_schema) = (
        catalog.schema(PG_CATALOG),
        catalog.schema(&defaults.default_schema),
    ) else {
        return;
    };
    let common_table_names = common_table_names(sql);
    let _ = visit_relations_mut(sql, |name: &mut ObjectName| {
        if let [ObjectNamePart::Identifier(ident)] = name.0.as_slice() {
            let table = ident.value.to_ascii_lowercase();
            let ours = default_schema
                .as_ref()
                .is_some_and(|schema| schema.table_exist(&table));
            if !ours && !common_table_names.contains(&table) && pg_catalog.table_exist(&table) {
                name.0
                    .insert(0, ObjectNamePart::Identifier(Ident::new(PG_CATALOG)));
            }
        }
        ControlFlow::<()>::Continue(())
    });
}

/// The names `WITH` clauses define anywhere in `statement`: those are not
/// catalog tables.
fn common_table_names(statement: &datafusion::sql::sqlparser::ast::Statement) -> HashSet<String> {
    use datafusion::sql::sqlparser::ast::Visit;
    struct Names(HashSet<String>);
    impl datafusion::sql::sqlparser::ast::Visitor for Names {
        type Break = ();
        fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
            if let Some(with) = &query.with {
                for table in &with.cte_tables {
                    self.0.insert(table.alias.name.value.to_ascii_lowercase());
                }
            }
            ControlFlow::Continue(())
        }
    }
    let mut names = Names(HashSet::new());
    let _ = statement.visit(&mut names);
    names.0
}

#[cfg(test)]
mod tests {
    use datafusion::sql::parser::DFParser;

    use super::*;

    fn rewritten(sql: &str) -> String {
        let config = datafusion::prelude::SessionConfig::new()
            .with_default_catalog_and_schema(crate::context::DEFAULT_CATALOG, "public");
        let ctx = SessionContext::new_with_config(config);
        crate::pg::catalog::install(
            &ctx,
            std::sync::Arc::new(NoDetails),
            crate::roles::RoleCatalog::in_memory(),
        )
        .unwrap();
        let mut statement = DFParser::parse_sql(sql).unwrap().pop_front().unwrap();
        qualify(&mut statement, &ctx);
        statement.to_string()
    }

    #[derive(Debug)]
    struct NoDetails;
    impl crate::pg::relations_catalog::RelationDetails for NoDetails {
        fn describe(
            &self,
            _table: &dyn datafusion::catalog::TableProvider,
        ) -> crate::pg::relations_catalog::RelationDetail {
            crate::pg::relations_catalog::RelationDetail::Other
        }
    }

    #[test]
    fn qualifies_catalog_tables_but_not_common_tables() {
        assert_eq!(
            rewritten("SELECT * FROM pg_class c JOIN pg_namespace n ON true"),
            "SELECT * FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON true"
        );
        assert_eq!(
            rewritten("WITH pg_class AS (SELECT 1 AS x) SELECT * FROM pg_class"),
            "WITH pg_class AS (SELECT 1 AS x) SELECT * FROM pg_class"
        );
        assert_eq!(rewritten("SELECT * FROM t"), "SELECT * FROM t");
        assert_eq!(
            rewritten("CREATE TABLE pg_am (x INT)"),
            "CREATE TABLE pg_am (x INT)"
        );
    }
}
