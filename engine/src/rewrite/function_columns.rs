//! The column of a set-returning function in FROM named as Postgres names
//! it.
//!
//! Postgres names the one column of `generate_series(…)` or `unnest(…)` in
//! FROM after the function (`SELECT generate_series FROM
//! generate_series(1, 3)`), or after the alias when one is given without
//! column names (`SELECT g FROM generate_series(1, 3) g`). DataFusion names
//! it `value` and `UNNEST(make_array(…))`, so Postgres' own queries failed
//! ("No field named g"). The rewrite gives the alias its column name:
//! `generate_series(1, 3) g` becomes `generate_series(1, 3) AS g(g)`, which
//! DataFusion plans as written.

use std::ops::ControlFlow;

use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{
    Ident, ObjectNamePart, TableAlias, TableAliasColumnDef, TableFactor, VisitMut, VisitorMut,
};

/// Names the column of every one-column set-returning function in FROM in
/// `statement`.
pub(crate) fn rewrite(statement: &mut DFStatement) {
    if let Some(sql) = super::sql_statement(statement) {
        let _ = sql.visit(&mut FunctionColumns);
    }
}

struct FunctionColumns;

impl VisitorMut for FunctionColumns {
    type Break = ();

    fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
        match factor {
            TableFactor::Table {
                name,
                alias,
                args: Some(_),
                ..
            } if name.0.len() == 1
                && name
                    .0
                    .first()
                    .and_then(ObjectNamePart::as_ident)
                    .is_some_and(|ident| ident.value.eq_ignore_ascii_case("generate_series")) =>
            {
                name_the_column(alias, "generate_series");
            }
            // Postgres gives `unnest(a, b)` one column per array, each
            // named `unnest`; only the one-array form has one column.
            TableFactor::UNNEST {
                alias,
                array_exprs,
                with_offset: false,
                with_ordinality: false,
                ..
            } if array_exprs.len() == 1 => name_the_column(alias, "unnest"),
            _ => {}
        }
        ControlFlow::Continue(())
    }
}

/// `f(…)` becomes `f(…) AS f(f)`, `f(…) a` becomes `f(…) AS a(a)`; an alias
/// that names its columns is left as written.
fn name_the_column(alias: &mut Option<TableAlias>, function: &str) {
    match alias {
        Some(alias) if alias.columns.is_empty() => {
            alias.columns = vec![TableAliasColumnDef {
                name: alias.name.clone(),
                data_type: None,
            }];
        }
        Some(_) => {}
        None => {
            *alias = Some(TableAlias {
                explicit: true,
                name: Ident::new(function),
                columns: vec![TableAliasColumnDef::from_name(function)],
                at: None,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    fn rewritten(sql: &str) -> String {
        crate::rewrite::rewritten_by(sql, super::rewrite)
    }

    #[test]
    fn the_column_takes_the_functions_name_or_the_alias() {
        assert_eq!(
            rewritten("SELECT * FROM generate_series(1, 3)"),
            "SELECT * FROM generate_series(1, 3) AS generate_series (generate_series)"
        );
        assert_eq!(
            rewritten("SELECT g FROM generate_series(1, 3) g"),
            "SELECT g FROM generate_series(1, 3) g (g)"
        );
        assert_eq!(
            rewritten("SELECT u FROM unnest([1, 2]) AS u"),
            "SELECT u FROM UNNEST([1, 2]) AS u (u)"
        );
    }

    #[test]
    fn named_columns_and_other_functions_stay_as_written() {
        for sql in [
            "SELECT x FROM generate_series(1, 3) AS t (x)",
            "SELECT * FROM range(1, 3)",
            "SELECT * FROM UNNEST([1], [2])",
            "SELECT * FROM generate_series",
        ] {
            assert_eq!(rewritten(sql), sql);
        }
    }
}
