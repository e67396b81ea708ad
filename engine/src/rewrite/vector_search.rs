//! `VECTOR_SEARCH` in Flink's form: the `k` rows of a table nearest to a
//! query vector, with their distance as `score` (ascending).
//!
//! ```sql
//! SELECT * FROM VECTOR_SEARCH(TABLE docs, DESCRIPTOR(v), '[1,0,0]'::vector(3), 5);
//! SELECT * FROM VECTOR_SEARCH(TABLE docs, EMBED('minilm', 'cats'), DESCRIPTOR(v), 5,
//!                             MAP['metric', 'l2']) WHERE category = 'pets';
//! SELECT q.id, s.id, s.score
//! FROM queries q, LATERAL TABLE(VECTOR_SEARCH(TABLE docs, q.qv, DESCRIPTOR(v), 3)) AS s;
//! ```
//!
//! A search with a query vector of its own becomes the pgvector idiom,
//! `SELECT *, distance(v, q) AS score FROM docs WHERE v IS NOT NULL ORDER
//! BY score LIMIT k`, which DataFusion runs as a top-k (a bounded heap per
//! partition, merged): the one plan every exact search shares. Conjuncts of
//! the enclosing `WHERE` that do not read `score` move inside, before the
//! limit, so a filtered search returns `k` rows whenever `k` rows match.
//! A `LATERAL` search takes its query vector from each row of the table
//! before it: the distinct query vectors are ranked against the table at
//! once (`row_number()` per query vector) and joined back to their rows.
//!
//! The metric is `cosine` unless the options map says `'metric'`: `l2`,
//! `ip` (negative inner product, as pgvector's `<#>`), `l1` or `cosine`.
//! `'ef_search'` is accepted for the index path (an exact search is exact
//! whatever it says). The subqueries are built from constant templates
//! whose placeholders are replaced by the call's own expression nodes,
//! never by text.

use std::collections::HashMap;
use std::ops::ControlFlow;

use datafusion::error::{DataFusionError, Result};
use datafusion::sql::parser::{DFParser, Statement as DFStatement};
use datafusion::sql::sqlparser::ast::{
    self, BinaryOperator, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, Ident, ObjectName,
    SelectItem, TableAlias, TableFactor, VisitMut, VisitorMut,
};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use sluice_functions::vector::join_key::VECTOR_JOIN_KEY;

use crate::sql::calls::function_call;
use crate::sql::names::ident_name;
use sluice_types::error::{SluiceError, SqlState};

/// The function's name, as the token pass and this rewrite know it.
pub const VECTOR_SEARCH: &str = "vector_search";

/// The column a batch search adds to join results back to their query
/// rows; wildcards of the enclosing query exclude it.
const QUERY_COLUMN: &str = "__sluice_query";

/// One search with its own query vector.
const SEARCH_TEMPLATE: &str = "SELECT *, __sluice_metric(__sluice_column, __sluice_vector) AS score \
     FROM __sluice_table WHERE __sluice_column IS NOT NULL AND __sluice_filter \
     ORDER BY score ASC LIMIT __sluice_k";

/// The searches of a `LATERAL` call: every distinct query vector of the
/// outer table against the searched table, the `k` nearest of each kept.
const BATCH_TEMPLATE: &str = "SELECT * EXCLUDE (__sluice_rank) FROM (\
     SELECT *, __sluice_metric(__sluice_column, __sluice_query) AS score, \
       row_number() OVER (PARTITION BY __sluice_query \
         ORDER BY __sluice_metric(__sluice_column, __sluice_query) ASC) AS __sluice_rank \
     FROM __sluice_table, \
       (SELECT DISTINCT __sluice_vector AS __sluice_query FROM __sluice_outer \
        WHERE __sluice_outer_filter) AS __sluice_queries \
     WHERE __sluice_column IS NOT NULL) AS __sluice_ranked \
     WHERE __sluice_rank <= __sluice_k";

const USAGE: &str = "VECTOR_SEARCH(TABLE t, DESCRIPTOR(vector_column), query_vector, k \
     [, MAP['metric', 'cosine' | 'l2' | 'ip' | 'l1', 'ef_search', 'n']]) \
     (the query vector may also come before the DESCRIPTOR)";

/// Replaces every `VECTOR_SEARCH` call of `statement` by its subquery.
pub(crate) fn rewrite(statement: &mut DFStatement) -> Result<()> {
    let Some(inner) = super::sql_statement(statement) else {
        return Ok(());
    };
    let mut rewriter = Rewriter { error: None };
    let _ = inner.visit(&mut rewriter);
    rewriter.error.map_or(Ok(()), Err)
}

struct Rewriter {
    error: Option<DataFusionError>,
}

impl VisitorMut for Rewriter {
    type Break = ();

    fn pre_visit_select(&mut self, select: &mut ast::Select) -> ControlFlow<()> {
        match rewrite_select(select) {
            Ok(()) => ControlFlow::Continue(()),
            Err(e) => {
                self.error = Some(e);
                ControlFlow::Break(())
            }
        }
    }
}

/// A parsed call.
struct Search {
    table: ObjectName,
    column: Ident,
    vector: Expr,
    k: Expr,
    metric: &'static str,
}

/// Rewrites the searches in `select`'s `FROM`.
fn rewrite_select(select: &mut ast::Select) -> Result<()> {
    let alone = select.from.len() == 1 && select.from[0].joins.is_empty();
    for at in 0..select.from.len() {
        let (lateral, call) = match search_call(&select.from[at].relation) {
            Some(found) => found,
            None => continue,
        };
        let search = parse(&call.args)?;
        let alias = call.alias.clone();
        if !lateral {
            let filter = match alone {
                true => take_pushable(&mut select.selection),
                false => None,
            };
            select.from[at].relation = derived(single(&search, &alias, filter)?, alias);
            continue;
        }
        if at == 0 || !select.from[at].joins.is_empty() {
            return Err(usage(
                "a LATERAL search follows the table of its query vectors, as in \
                 FROM t, LATERAL TABLE(VECTOR_SEARCH(TABLE docs, t.v, DESCRIPTOR(v), k))",
            ));
        }
        let outer = select.from[at - 1].relation.clone();
        let outer_filter = select
            .selection
            .as_ref()
            .and_then(|condition| filter_on(&outer, condition));
        let alias = alias.unwrap_or_else(|| TableAlias {
            explicit: true,
            name: Ident::new(VECTOR_SEARCH),
            columns: Vec::new(),
            at: None,
        });
        // Joined by the vectors' bits, not their floats: see
        // `sluice_functions::vector::join_key`.
        let joined = Expr::BinaryOp {
            left: Box::new(join_key(Expr::CompoundIdentifier(vec![
                alias.name.clone(),
                Ident::new(QUERY_COLUMN),
            ]))),
            op: BinaryOperator::Eq,
            right: Box::new(join_key(search.vector.clone())),
        };
        select.selection = Some(match select.selection.take() {
            Some(condition) => and(condition, joined),
            None => joined,
        });
        exclude_query_column(&mut select.projection, &alias.name);
        select.from[at].relation = derived(batch(&search, outer, outer_filter)?, Some(alias));
    }
    Ok(())
}

/// What a `FROM` item calling `VECTOR_SEARCH` holds.
struct Call {
    args: Vec<FunctionArg>,
    alias: Option<TableAlias>,
}

/// The call in `factor` and whether it is `LATERAL`.
fn search_call(factor: &TableFactor) -> Option<(bool, Call)> {
    let is_search = |name: &ObjectName| {
        matches!(name.0.as_slice(), [part] if part.as_ident().is_some_and(|i|
            i.quote_style.is_none() && i.value.eq_ignore_ascii_case(VECTOR_SEARCH)))
    };
    match factor {
        TableFactor::Table {
            name,
            args: Some(args),
            alias,
            ..
        } if is_search(name) => Some((
            false,
            Call {
                args: args.args.clone(),
                alias: alias.clone(),
            },
        )),
        TableFactor::Function {
            lateral,
            name,
            args,
            alias,
            ..
        } if is_search(name) => Some((
            *lateral,
            Call {
                args: args.clone(),
                alias: alias.clone(),
            },
        )),
        _ => None,
    }
}

fn usage(detail: &str) -> DataFusionError {
    SluiceError::new(
        SqlState::SYNTAX_ERROR,
        format!("{detail}; expected {USAGE}"),
    )
    .into()
}

fn invalid(detail: String) -> DataFusionError {
    SluiceError::new(SqlState::INVALID_PARAMETER_VALUE, detail).into()
}

/// Reads the call's arguments (the token pass dropped `TABLE` and turned
/// `MAP[…]` into `MAP(…)`).
fn parse(args: &[FunctionArg]) -> Result<Search> {
    let exprs: Vec<&Expr> = args
        .iter()
        .map(|a| match a {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Ok(e),
            _ => Err(usage("named arguments are not accepted")),
        })
        .collect::<Result<_>>()?;
    let (table, rest) = match exprs.as_slice() {
        [table, rest @ ..] => (*table, rest),
        [] => return Err(usage("no arguments")),
    };
    let table = match table {
        Expr::Identifier(i) => ObjectName::from(vec![i.clone()]),
        Expr::CompoundIdentifier(parts) => ObjectName::from(parts.clone()),
        _ => return Err(usage("the first argument must be TABLE t")),
    };
    let (column, vector, rest) = match rest {
        [first, second, rest @ ..] => match (descriptor_column(first), descriptor_column(second)) {
            (Some(column), None) => (column, (*second).clone(), rest),
            (None, Some(column)) => (column, (*first).clone(), rest),
            _ => return Err(usage("one argument must be DESCRIPTOR(vector_column)")),
        },
        _ => return Err(usage("too few arguments")),
    };
    let (k, options) = match rest {
        [k] => (*k, None),
        [k, options] => (*k, Some(*options)),
        _ => return Err(usage("wrong number of arguments")),
    };
    let k = positive_k(k)?;
    let metric = match options {
        Some(options) => metric_of(options)?,
        None => "cosine_distance",
    };
    Ok(Search {
        table,
        column,
        vector,
        k,
        metric,
    })
}

/// The column of `DESCRIPTOR(column)`, if `expr` is one.
fn descriptor_column(expr: &Expr) -> Option<Ident> {
    let Expr::Function(function) = expr else {
        return None;
    };
    if !function.name.to_string().eq_ignore_ascii_case("descriptor") {
        return None;
    }
    let FunctionArguments::List(list) = &function.args else {
        return None;
    };
    match list.args.as_slice() {
        [FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Identifier(column)))] => {
            Some(column.clone())
        }
        _ => None,
    }
}

/// `k`, which must be a positive integer literal.
fn positive_k(expr: &Expr) -> Result<Expr> {
    let valid = match expr {
        Expr::Value(value) => match &value.value {
            ast::Value::Number(n, _) => n.parse::<u64>().is_ok_and(|k| k > 0),
            _ => false,
        },
        _ => false,
    };
    if !valid {
        return Err(invalid(format!(
            "VECTOR_SEARCH: k must be a positive integer, got {expr}"
        )));
    }
    Ok(expr.clone())
}

/// The distance function the options' `'metric'` names.
fn metric_of(options: &Expr) -> Result<&'static str> {
    let Expr::Function(function) = options else {
        return Err(usage("the options must be MAP['key', 'value', …]"));
    };
    if !function.name.to_string().eq_ignore_ascii_case("map") {
        return Err(usage("the options must be MAP['key', 'value', …]"));
    }
    let FunctionArguments::List(list) = &function.args else {
        return Err(usage("the options must be MAP['key', 'value', …]"));
    };
    let strings: Vec<String> = list
        .args
        .iter()
        .map(|arg| match arg {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Value(value))) => match &value.value {
                ast::Value::SingleQuotedString(s) => Ok(s.clone()),
                ast::Value::Number(n, _) => Ok(n.clone()),
                _ => Err(usage("the options must be string literals")),
            },
            _ => Err(usage("the options must be string literals")),
        })
        .collect::<Result<_>>()?;
    if !strings.len().is_multiple_of(2) {
        return Err(usage("the options map needs a value for every key"));
    }
    let mut metric = "cosine_distance";
    for pair in strings.chunks(2) {
        let (key, value) = (pair[0].to_ascii_lowercase(), pair[1].to_ascii_lowercase());
        match key.as_str() {
            "metric" => {
                metric = match value.as_str() {
                    "cosine" => "cosine_distance",
                    "l2" | "euclidean" => "l2_distance",
                    "ip" | "inner_product" | "dot" => "negative_inner_product",
                    "l1" | "manhattan" => "l1_distance",
                    other => {
                        return Err(invalid(format!(
                            "VECTOR_SEARCH: unknown metric '{other}' (cosine, l2, ip or l1)"
                        )));
                    }
                }
            }
            "ef_search" => {
                if value.parse::<u32>().map_or(true, |n| n == 0) {
                    return Err(invalid(format!(
                        "VECTOR_SEARCH: ef_search must be a positive integer, got '{value}'"
                    )));
                }
            }
            other => {
                return Err(invalid(format!(
                    "VECTOR_SEARCH: unknown option '{other}' (metric, ef_search)"
                )));
            }
        }
    }
    Ok(metric)
}

/// Takes the conjuncts of `selection` that do not read `score` (the
/// searched table's own columns: they filter the search itself).
fn take_pushable(selection: &mut Option<Expr>) -> Option<Expr> {
    let condition = selection.take()?;
    let mut pushed = Vec::new();
    let mut kept = Vec::new();
    for conjunct in conjuncts(condition) {
        match reads_score(&conjunct) {
            true => kept.push(conjunct),
            false => pushed.push(conjunct),
        }
    }
    *selection = kept.into_iter().reduce(and);
    pushed.into_iter().reduce(and)
}

fn conjuncts(expr: Expr) -> Vec<Expr> {
    match expr {
        Expr::BinaryOp {
            left,
            op: BinaryOperator::And,
            right,
        } => {
            let mut all = conjuncts(*left);
            all.extend(conjuncts(*right));
            all
        }
        Expr::Nested(inner)
            if matches!(
                *inner,
                Expr::BinaryOp {
                    op: BinaryOperator::And,
                    ..
                }
            ) =>
        {
            conjuncts(*inner)
        }
        other => vec![other],
    }
}

/// `__sluice_vector_key(expr)`.
fn join_key(expr: Expr) -> Expr {
    function_call(VECTOR_JOIN_KEY, vec![expr])
}

fn and(left: Expr, right: Expr) -> Expr {
    Expr::BinaryOp {
        left: Box::new(left),
        op: BinaryOperator::And,
        right: Box::new(right),
    }
}

/// Whether `expr` names a column `score` (or contains a subquery, which
/// might): such a conjunct stays outside the search.
fn reads_score(expr: &Expr) -> bool {
    struct Finder(bool);
    impl ast::Visitor for Finder {
        type Break = ();
        fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
            let score = |i: &Ident| i.value.eq_ignore_ascii_case("score");
            self.0 |= match expr {
                Expr::Identifier(i) => score(i),
                Expr::CompoundIdentifier(parts) => parts.last().is_some_and(score),
                Expr::Subquery(_) | Expr::Exists { .. } | Expr::InSubquery { .. } => true,
                _ => false,
            };
            ControlFlow::Continue(())
        }
    }
    let mut finder = Finder(false);
    let _ = ast::Visit::visit(expr, &mut finder);
    finder.0
}

/// `* EXCLUDE (__sluice_query)` for the wildcards of the enclosing query
/// that would show the batch search's join column.
fn exclude_query_column(projection: &mut [SelectItem], search: &Ident) {
    for item in projection {
        let options = match item {
            SelectItem::Wildcard(options) => options,
            SelectItem::QualifiedWildcard(
                ast::SelectItemQualifiedWildcardKind::ObjectName(name),
                options,
            ) if name
                .0
                .last()
                .and_then(|p| p.as_ident())
                .is_some_and(|i| i.value == search.value) =>
            {
                options
            }
            _ => continue,
        };
        let column = ObjectName::from(vec![Ident::new(QUERY_COLUMN)]);
        options.opt_exclude = Some(match options.opt_exclude.take() {
            None => ast::ExcludeSelectItem::Single(column),
            Some(ast::ExcludeSelectItem::Single(other)) => {
                ast::ExcludeSelectItem::Multiple(vec![other, column])
            }
            Some(ast::ExcludeSelectItem::Multiple(mut all)) => {
                all.push(column);
                ast::ExcludeSelectItem::Multiple(all)
            }
        });
    }
}

/// The query of one search: the template with the call's parts.
fn single(search: &Search, alias: &Option<TableAlias>, filter: Option<Expr>) -> Result<ast::Query> {
    let table = table_factor(&search.table, alias.clone());
    let true_literal = Expr::value(ast::Value::Boolean(true));
    fill(
        SEARCH_TEMPLATE,
        search,
        HashMap::from([("__sluice_table", table)]),
        HashMap::from([("__sluice_filter", filter.unwrap_or(true_literal))]),
    )
}

/// The query of a `LATERAL` search over the query vectors of the rows of
/// `outer` that pass `outer_filter`.
fn batch(search: &Search, outer: TableFactor, outer_filter: Option<Expr>) -> Result<ast::Query> {
    let table = table_factor(&search.table, None);
    let true_literal = Expr::value(ast::Value::Boolean(true));
    fill(
        BATCH_TEMPLATE,
        search,
        HashMap::from([("__sluice_table", table), ("__sluice_outer", outer)]),
        HashMap::from([(
            "__sluice_outer_filter",
            outer_filter.unwrap_or(true_literal),
        )]),
    )
}

/// The conjuncts of `condition` that read only columns of `outer`
/// (qualified by its name or alias) through operators, literals and
/// casts: a copy of them filters the query vectors before they are
/// searched, so `WHERE q.id < 100` searches 100 vectors, not the whole
/// table's. The originals stay where they are; they still filter the rows
/// joined back. Function calls are left out: a volatile one (`random()`)
/// could keep a row in one place and drop its vector in the other.
fn filter_on(outer: &TableFactor, condition: &Expr) -> Option<Expr> {
    let name = match outer {
        TableFactor::Table {
            alias: Some(alias), ..
        }
        | TableFactor::Derived {
            alias: Some(alias), ..
        } => alias.name.clone(),
        TableFactor::Table { name, .. } => name.0.last()?.as_ident()?.clone(),
        _ => return None,
    };
    conjuncts(condition.clone())
        .into_iter()
        .filter(|conjunct| reads_only(conjunct, &name))
        .reduce(and)
}

/// Whether `expr` is built of `relation`'s columns (as `relation.column`),
/// literals, operators and casts only.
fn reads_only(expr: &Expr, relation: &Ident) -> bool {
    struct Checker<'a> {
        relation: &'a Ident,
        pure: bool,
        columns: usize,
    }
    impl ast::Visitor for Checker<'_> {
        type Break = ();
        fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
            match expr {
                Expr::CompoundIdentifier(parts) => match parts.as_slice() {
                    [table, _] if ident_name(table) == ident_name(self.relation) => {
                        self.columns += 1
                    }
                    _ => self.pure = false,
                },
                Expr::Value(_)
                | Expr::TypedString { .. }
                | Expr::BinaryOp { .. }
                | Expr::UnaryOp { .. }
                | Expr::Nested(_)
                | Expr::IsNull(_)
                | Expr::IsNotNull(_)
                | Expr::IsTrue(_)
                | Expr::IsFalse(_)
                | Expr::IsNotTrue(_)
                | Expr::IsNotFalse(_)
                | Expr::IsDistinctFrom(..)
                | Expr::IsNotDistinctFrom(..)
                | Expr::InList { .. }
                | Expr::Between { .. }
                | Expr::Like { .. }
                | Expr::ILike { .. }
                | Expr::Cast { .. } => {}
                _ => self.pure = false,
            }
            match self.pure {
                true => ControlFlow::Continue(()),
                false => ControlFlow::Break(()),
            }
        }
    }
    let mut checker = Checker {
        relation,
        pure: true,
        columns: 0,
    };
    let _ = ast::Visit::visit(expr, &mut checker);
    checker.pure && checker.columns > 0
}

/// `FROM name [AS alias]`.
fn table_factor(name: &ObjectName, alias: Option<TableAlias>) -> TableFactor {
    TableFactor::Table {
        name: name.clone(),
        alias,
        args: None,
        with_hints: Vec::new(),
        version: None,
        with_ordinality: false,
        partitions: Vec::new(),
        json_path: None,
        sample: None,
        index_hints: Vec::new(),
    }
}

fn derived(query: ast::Query, alias: Option<TableAlias>) -> TableFactor {
    TableFactor::Derived {
        lateral: false,
        subquery: Box::new(query),
        alias,
        sample: None,
    }
}

/// Parses `template` and replaces its placeholders: tables by `tables`,
/// expressions by `exprs` and the search's own parts.
fn fill(
    template: &str,
    search: &Search,
    tables: HashMap<&'static str, TableFactor>,
    mut exprs: HashMap<&'static str, Expr>,
) -> Result<ast::Query> {
    let statements = DFParser::parse_sql_with_dialect(template, &GenericDialect {})?;
    let Some(DFStatement::Statement(statement)) = statements.into_iter().next() else {
        return Err(DataFusionError::Internal(
            "bad VECTOR_SEARCH template".into(),
        ));
    };
    let ast::Statement::Query(mut query) = *statement else {
        return Err(DataFusionError::Internal(
            "bad VECTOR_SEARCH template".into(),
        ));
    };
    exprs.insert("__sluice_column", Expr::Identifier(search.column.clone()));
    exprs.insert("__sluice_vector", search.vector.clone());
    exprs.insert("__sluice_k", search.k.clone());
    let mut filler = Filler {
        tables,
        exprs,
        metric: search.metric,
    };
    let _ = query.visit(&mut filler);
    Ok(*query)
}

struct Filler {
    tables: HashMap<&'static str, TableFactor>,
    exprs: HashMap<&'static str, Expr>,
    metric: &'static str,
}

impl VisitorMut for Filler {
    type Break = ();

    fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
        if let TableFactor::Table { name, .. } = factor
            && let Some(replacement) = self.tables.get(name.to_string().as_str())
        {
            *factor = replacement.clone();
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        match expr {
            Expr::Identifier(ident) => {
                if let Some(replacement) = self.exprs.get(ident.value.as_str()) {
                    *expr = replacement.clone();
                }
            }
            Expr::Function(function) if function.name.to_string() == "__sluice_metric" => {
                function.name = ObjectName::from(vec![Ident::new(self.metric)]);
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewritten(sql: &str) -> String {
        let sql = crate::sql::table_function_syntax::normalize_text(sql);
        let mut statement = DFParser::parse_sql_with_dialect(&sql, &GenericDialect {})
            .unwrap()
            .pop_front()
            .unwrap();
        rewrite(&mut statement).unwrap();
        statement.to_string()
    }

    #[test]
    fn a_search_becomes_a_top_k_with_the_table_filters_inside() {
        let sql = rewritten(
            "SELECT id FROM VECTOR_SEARCH(TABLE docs, DESCRIPTOR(v), '[1,0]', 5, \
             MAP['metric', 'l2']) AS s WHERE s.cat = 'x' AND score < 1",
        );
        assert_eq!(
            sql,
            "SELECT id FROM (SELECT *, l2_distance(v, '[1,0]') AS score FROM docs AS s \
             WHERE v IS NOT NULL AND s.cat = 'x' ORDER BY score ASC LIMIT 5) AS s WHERE score < 1"
        );
    }

    #[test]
    fn a_lateral_search_ranks_the_distinct_query_vectors_and_joins_them_back() {
        let sql = rewritten(
            "SELECT * FROM q, LATERAL TABLE(VECTOR_SEARCH(TABLE docs, q.qv, DESCRIPTOR(v), 2)) AS s",
        );
        assert!(
            sql.starts_with("SELECT * EXCLUDE __sluice_query FROM q, (SELECT"),
            "{sql}"
        );
        assert!(
            sql.contains("(SELECT DISTINCT q.qv AS __sluice_query FROM q WHERE true)"),
            "{sql}"
        );
        assert!(
            sql.ends_with(
                "WHERE __sluice_vector_key(s.__sluice_query) = __sluice_vector_key(q.qv)"
            ),
            "{sql}"
        );
    }

    #[test]
    fn a_lateral_search_copies_the_query_tables_own_filters_to_its_query_vectors() {
        let sql = rewritten(
            "SELECT * FROM qs AS q, LATERAL TABLE(VECTOR_SEARCH(TABLE docs, q.qv, DESCRIPTOR(v), 2)) AS s \
             WHERE q.qid < 100 AND s.id > 3 AND Q.lang IN ('en', 'fr') AND random() < q.p AND s.id <> q.qid",
        );
        assert!(
            sql.contains(
                "FROM qs AS q WHERE q.qid < 100 AND Q.lang IN ('en', 'fr')) AS __sluice_queries"
            ),
            "{sql}"
        );
        assert!(
            sql.ends_with(
                "WHERE q.qid < 100 AND s.id > 3 AND Q.lang IN ('en', 'fr') AND random() < q.p \
                 AND s.id <> q.qid AND __sluice_vector_key(s.__sluice_query) = __sluice_vector_key(q.qv)"
            ),
            "{sql}"
        );
    }
}
