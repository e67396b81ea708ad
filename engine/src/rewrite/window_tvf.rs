//! Flink's window table functions, in one-off and continuous queries alike:
//!
//! ```sql
//! SELECT window_start, window_end, count(*)
//! FROM TUMBLE(TABLE bids, DESCRIPTOR(ts), INTERVAL '1' MINUTE)
//! GROUP BY window_start, window_end;
//! -- HOP(TABLE t, DESCRIPTOR(ts), slide, size): windows of `size` every `slide`
//! ```
//!
//! Each call becomes a subquery over its table that adds `window_start`,
//! `window_end` and `window_time` (`window_end` minus 1 ms, as in Flink):
//! TUMBLE bins each row with `date_bin`; HOP is a `UNION ALL` of one such
//! projection per window a row falls in (`size / slide` of them, so `size`
//! must be a multiple of `slide`). A continuous query that groups by
//! `window_start, window_end` emits each window when the watermark passes
//! its end (the streaming aggregate).
//!
//! `SESSION(TABLE t [PARTITION BY k], DESCRIPTOR(ts), gap)` groups rows
//! (of one partition) whose times lie within `gap` of each other; a session
//! ends `gap` after its last row. One-off queries find the sessions with
//! window functions (`lag` marks a row starting a session, a running `sum`
//! numbers them). Continuous queries ([`rewrite_for_streaming`]) give each
//! row its own proto-session `[ts, ts + gap]` instead and the streaming
//! aggregate merges the ones that touch, as Flink's session windows do.
//!
//! The subquery is built from a constant template whose placeholders
//! (`__sluice_size`, …) are replaced by the call's own expression nodes,
//! never by text.

use std::ops::ControlFlow;

use datafusion::error::{DataFusionError, Result};
use datafusion::sql::parser::{DFParser, Statement as DFStatement};
use datafusion::sql::sqlparser::ast::{
    self, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, Ident, ObjectName, SetExpr,
    SetOperator, SetQuantifier, TableFactor, VisitMut, VisitorMut,
};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use sluice_types::error::{SluiceError, SqlState};

use crate::sql::calls::function_call;
use crate::sql::watermark::interval_nanos;

/// Placeholders of the template.
const TABLE: &str = "__sluice_table";
const TIME: &str = "__sluice_time";
const SIZE: &str = "__sluice_size";
const BIN: &str = "__sluice_bin";
const OFFSET: &str = "__sluice_offset";

/// One projection adding the window columns: rows are binned by `BIN` (an
/// interval, as `date_bin` takes it), shifted back by `OFFSET`, and windows
/// last `SIZE`. Offsets and sizes are fixed durations (see
/// [`nanos_duration`]), so the shifts are plain integer additions.
const TEMPLATE: &str = "SELECT *, \
     date_bin(__sluice_bin, __sluice_time, TIMESTAMP '1970-01-01 00:00:00') - __sluice_offset \
       AS window_start, \
     date_bin(__sluice_bin, __sluice_time, TIMESTAMP '1970-01-01 00:00:00') - __sluice_offset \
       + __sluice_size AS window_end, \
     date_bin(__sluice_bin, __sluice_time, TIMESTAMP '1970-01-01 00:00:00') - __sluice_offset \
       + __sluice_size - arrow_cast(1000000, 'Duration(Nanosecond)') AS window_time \
     FROM __sluice_table";

/// Session windows of a one-off query: sessions numbered per partition by
/// a running sum of session starts, bounds from their rows' times.
const SESSION_TEMPLATE: &str = "SELECT * EXCLUDE (__sluice_new, __sluice_session), \
     min(__sluice_time) OVER (PARTITION BY __sluice_partition, __sluice_session) \
       AS window_start, \
     max(__sluice_time) OVER (PARTITION BY __sluice_partition, __sluice_session) \
       + __sluice_size AS window_end, \
     max(__sluice_time) OVER (PARTITION BY __sluice_partition, __sluice_session) \
       + __sluice_size - arrow_cast(1000000, 'Duration(Nanosecond)') AS window_time \
     FROM (SELECT *, sum(__sluice_new) OVER (PARTITION BY __sluice_partition \
             ORDER BY __sluice_time ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) \
             AS __sluice_session \
           FROM (SELECT *, CASE WHEN lag(__sluice_time) OVER (PARTITION BY __sluice_partition \
                   ORDER BY __sluice_time) >= __sluice_time - __sluice_size THEN 0 ELSE 1 END \
                   AS __sluice_new \
                 FROM __sluice_table) AS __sluice_marked) AS __sluice_numbered";

/// Session windows of a continuous query: each row its own proto-session,
/// merged by the streaming aggregate.
const PROTO_SESSION_TEMPLATE: &str = "SELECT *, __sluice_time AS window_start, \
     __sluice_time + __sluice_size AS window_end, \
     __sluice_time + __sluice_size - arrow_cast(1000000, 'Duration(Nanosecond)') AS window_time \
     FROM __sluice_table";

/// Placeholder of a window's `PARTITION BY` list.
const PARTITION: &str = "__sluice_partition";

/// A `SESSION` window of a continuous query, for the streaming aggregate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSpec {
    /// The gap that ends a session, in nanoseconds.
    pub gap_nanos: i64,
    /// The `PARTITION BY` columns (sessions are per partition).
    pub partition_by: Vec<String>,
}

/// Replaces every window table function of `statement` by its subquery.
pub(crate) fn rewrite(statement: &mut DFStatement) -> Result<()> {
    let Some(inner) = super::sql_statement(statement) else {
        return Ok(());
    };
    let mut rewriter = Rewriter {
        error: None,
        sessions: None,
    };
    let _ = inner.visit(&mut rewriter);
    match rewriter.error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Replaces the window table functions of a continuous query, `SESSION`
/// by proto-sessions; returns the sessions' specs.
pub fn rewrite_for_streaming(query: &mut ast::Query) -> Result<Vec<SessionSpec>> {
    let mut rewriter = Rewriter {
        error: None,
        sessions: Some(Vec::new()),
    };
    let _ = query.visit(&mut rewriter);
    match rewriter.error {
        Some(e) => Err(e),
        None => Ok(rewriter.sessions.unwrap_or_default()),
    }
}

struct Rewriter {
    error: Option<DataFusionError>,
    /// `Some` for a continuous query: its sessions so far.
    sessions: Option<Vec<SessionSpec>>,
}

impl VisitorMut for Rewriter {
    type Break = ();

    fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
        let TableFactor::Table {
            name,
            args: Some(args),
            alias,
            ..
        } = factor
        else {
            return ControlFlow::Continue(());
        };
        let Some(kind) = window_kind(name) else {
            return ControlFlow::Continue(());
        };
        match subquery(kind, &args.args, self.sessions.as_mut()) {
            Ok(query) => {
                *factor = TableFactor::Derived {
                    lateral: false,
                    subquery: Box::new(query),
                    alias: alias.take(),
                    sample: None,
                };
                ControlFlow::Continue(())
            }
            Err(e) => {
                self.error = Some(e);
                ControlFlow::Break(())
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WindowKind {
    Tumble,
    Hop,
    Session,
}

impl WindowKind {
    fn usage(self) -> &'static str {
        match self {
            WindowKind::Tumble => "TUMBLE(TABLE t | (subquery), DESCRIPTOR(time_column), size)",
            WindowKind::Hop => "HOP(TABLE t | (subquery), DESCRIPTOR(time_column), slide, size)",
            WindowKind::Session => {
                "SESSION(TABLE t [PARTITION BY column], DESCRIPTOR(time_column), gap)"
            }
        }
    }
}

fn window_kind(name: &ObjectName) -> Option<WindowKind> {
    let [part] = name.0.as_slice() else {
        return None;
    };
    let ident = part.as_ident()?;
    if ident.quote_style.is_some() {
        return None;
    }
    match ident.value.to_ascii_lowercase().as_str() {
        "tumble" => Some(WindowKind::Tumble),
        "hop" => Some(WindowKind::Hop),
        "session" => Some(WindowKind::Session),
        _ => None,
    }
}

fn usage_error(kind: WindowKind, detail: &str) -> DataFusionError {
    SluiceError::new(
        SqlState::SYNTAX_ERROR,
        format!("{detail}; expected {}", kind.usage()),
    )
    .into()
}

fn subquery(
    kind: WindowKind,
    args: &[FunctionArg],
    streaming_sessions: Option<&mut Vec<SessionSpec>>,
) -> Result<ast::Query> {
    let exprs: Vec<&Expr> = args
        .iter()
        .map(|a| match a {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Ok(e),
            _ => Err(usage_error(kind, "named arguments are not accepted")),
        })
        .collect::<Result<_>>()?;
    let (table, partition_by, rest) = match exprs.as_slice() {
        [table, second, rest @ ..] => match partition_columns(second) {
            Some(columns) if kind == WindowKind::Session => (*table, columns, rest),
            _ => (*table, Vec::new(), &exprs[1..]),
        },
        _ => return Err(usage_error(kind, "too few arguments")),
    };
    let (descriptor, sizes) = match rest {
        [descriptor, sizes @ ..] => (*descriptor, sizes),
        _ => return Err(usage_error(kind, "too few arguments")),
    };
    let table = match table {
        Expr::Identifier(i) => WindowInput::Table(ObjectName::from(vec![i.clone()])),
        Expr::CompoundIdentifier(parts) => WindowInput::Table(ObjectName::from(parts.clone())),
        Expr::Subquery(query) => WindowInput::Query(query.clone()),
        _ => {
            return Err(usage_error(
                kind,
                "the first argument must name a table or be a subquery",
            ));
        }
    };
    let time = descriptor_column(kind, descriptor)?;
    match (kind, sizes) {
        (WindowKind::Tumble, [size]) => {
            let size_nanos = positive_interval(kind, size)?;
            let zero = nanos_duration(0);
            let length = nanos_duration(size_nanos);
            projection(TEMPLATE, &table, &time, size, &length, &zero, &[])
        }
        (WindowKind::Hop, [slide, size]) => {
            let slide_nanos = positive_interval(kind, slide)?;
            let size_nanos = positive_interval(kind, size)?;
            if size_nanos % slide_nanos != 0 {
                return Err(SluiceError::new(
                    SqlState::INVALID_PARAMETER_VALUE,
                    format!("HOP: the size {size} must be a multiple of the slide {slide}"),
                )
                .into());
            }
            let windows = size_nanos / slide_nanos;
            let length = nanos_duration(size_nanos);
            let mut query: Option<ast::Query> = None;
            for j in 0..windows {
                let offset = nanos_duration(j * slide_nanos);
                let branch = projection(TEMPLATE, &table, &time, slide, &length, &offset, &[])?;
                query = Some(match query {
                    None => branch,
                    Some(left) => union_all(left, branch),
                });
            }
            query.ok_or_else(|| usage_error(kind, "no window"))
        }
        (WindowKind::Session, [gap]) => {
            let gap_nanos = positive_interval(kind, gap)?;
            let zero = nanos_duration(0);
            let gap = &nanos_duration(gap_nanos);
            let partition: Vec<Expr> = partition_by
                .iter()
                .map(|column| Expr::Identifier(column.clone()))
                .collect();
            match streaming_sessions {
                Some(sessions) => {
                    sessions.push(SessionSpec {
                        gap_nanos,
                        partition_by: partition_by.iter().map(|c| c.value.clone()).collect(),
                    });
                    projection(PROTO_SESSION_TEMPLATE, &table, &time, gap, gap, &zero, &[])
                }
                None => projection(SESSION_TEMPLATE, &table, &time, gap, gap, &zero, &partition),
            }
        }
        _ => Err(usage_error(kind, "wrong number of arguments")),
    }
}

fn descriptor_column(kind: WindowKind, expr: &Expr) -> Result<Ident> {
    let bad = || usage_error(kind, "the second argument must be DESCRIPTOR(time_column)");
    let Expr::Function(function) = expr else {
        return Err(bad());
    };
    if !function.name.to_string().eq_ignore_ascii_case("descriptor") {
        return Err(bad());
    }
    let FunctionArguments::List(list) = &function.args else {
        return Err(bad());
    };
    match list.args.as_slice() {
        [FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Identifier(column)))] => {
            Ok(column.clone())
        }
        _ => Err(bad()),
    }
}

/// The length of an `INTERVAL` argument, which must be positive.
fn positive_interval(kind: WindowKind, expr: &Expr) -> Result<i64> {
    let Expr::Interval(interval) = expr else {
        return Err(usage_error(
            kind,
            &format!("{expr} is not an INTERVAL literal"),
        ));
    };
    let nanos = interval_nanos(interval)?;
    if nanos <= 0 {
        return Err(SluiceError::new(
            SqlState::INVALID_PARAMETER_VALUE,
            format!("a window's {expr} must be positive"),
        )
        .into());
    }
    Ok(nanos)
}

/// A fixed duration of `nanos` nanoseconds, as an Arrow duration rather
/// than an SQL interval: a timestamp plus a duration is one integer
/// addition per row (DataFusion casts the duration to the timestamp's
/// unit), where adding a month-day-nano interval goes through calendar
/// arithmetic per row, which cost most of a HOP window's time.
fn nanos_duration(nanos: i64) -> Expr {
    function_call(
        "arrow_cast",
        vec![
            Expr::value(ast::Value::Number(nanos.to_string(), false)),
            Expr::value(ast::Value::SingleQuotedString(
                "Duration(Nanosecond)".into(),
            )),
        ],
    )
}

/// What a window function's rows come from.
enum WindowInput {
    /// `TABLE t`.
    Table(ObjectName),
    /// `(SELECT …)`: a query's rows, e.g. a join's.
    Query(Box<ast::Query>),
}

/// The columns of `SESSION(… PARTITION BY …)`, rewritten by the token
/// pass into a `__sluice_partition_by(columns)` argument; `None` for
/// another argument.
fn partition_columns(expr: &Expr) -> Option<Vec<Ident>> {
    let Expr::Function(function) = expr else {
        return None;
    };
    if !function
        .name
        .to_string()
        .eq_ignore_ascii_case(crate::sql::table_function_syntax::SESSION_PARTITION_BY)
    {
        return None;
    }
    let FunctionArguments::List(list) = &function.args else {
        return Some(Vec::new());
    };
    Some(
        list.args
            .iter()
            .filter_map(|arg| match arg {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Identifier(column))) => {
                    Some(column.clone())
                }
                FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::CompoundIdentifier(parts))) => {
                    parts.last().cloned()
                }
                _ => None,
            })
            .collect(),
    )
}

/// `template` with its placeholders replaced.
fn projection(
    template_text: &str,
    table: &WindowInput,
    time: &Ident,
    bin: &Expr,
    size: &Expr,
    offset: &Expr,
    partition: &[Expr],
) -> Result<ast::Query> {
    let mut query = template(template_text)?;
    let mut fill = Fill {
        table,
        time,
        bin,
        size,
        offset,
        partition,
    };
    let _ = query.visit(&mut fill);
    Ok(query)
}

struct Fill<'a> {
    table: &'a WindowInput,
    time: &'a Ident,
    bin: &'a Expr,
    size: &'a Expr,
    offset: &'a Expr,
    partition: &'a [Expr],
}

impl VisitorMut for Fill<'_> {
    type Break = ();

    fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
        if let TableFactor::Table { name, .. } = factor
            && name.to_string() == TABLE
        {
            match self.table {
                WindowInput::Table(table) => *name = table.clone(),
                WindowInput::Query(query) => {
                    *factor = TableFactor::Derived {
                        lateral: false,
                        subquery: query.clone(),
                        alias: Some(ast::TableAlias {
                            explicit: true,
                            name: Ident::new(TABLE),
                            columns: Vec::new(),
                            at: None,
                        }),
                        sample: None,
                    };
                }
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        // `PARTITION BY __sluice_partition[, …]`: the call's columns, or none.
        if let Expr::Function(function) = expr
            && let Some(ast::WindowType::WindowSpec(spec)) = &mut function.over
        {
            let mut partition_by = Vec::with_capacity(spec.partition_by.len());
            for e in std::mem::take(&mut spec.partition_by) {
                match &e {
                    Expr::Identifier(ident) if ident.value == PARTITION => {
                        partition_by.extend(self.partition.iter().cloned());
                    }
                    _ => partition_by.push(e),
                }
            }
            spec.partition_by = partition_by;
        }
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        if let Expr::Identifier(ident) = expr {
            match ident.value.as_str() {
                TIME => *expr = Expr::Identifier(self.time.clone()),
                SIZE => *expr = Expr::Nested(Box::new(self.size.clone())),
                BIN => *expr = self.bin.clone(),
                OFFSET => *expr = Expr::Nested(Box::new(self.offset.clone())),
                _ => {}
            }
        }
        ControlFlow::Continue(())
    }
}

fn union_all(left: ast::Query, right: ast::Query) -> ast::Query {
    let mut query = left.clone();
    query.body = Box::new(SetExpr::SetOperation {
        op: SetOperator::Union,
        set_quantifier: SetQuantifier::All,
        left: left.body,
        right: right.body,
    });
    query
}

fn template(text: &str) -> Result<ast::Query> {
    let internal = || DataFusionError::Internal("the window template has another shape".into());
    // The generic dialect: the session template's `* EXCLUDE (…)`.
    match DFParser::parse_sql_with_dialect(text, &GenericDialect {})?.pop_front() {
        Some(DFStatement::Statement(statement)) => match *statement {
            ast::Statement::Query(query) => Ok(*query),
            _ => Err(internal()),
        },
        _ => Err(internal()),
    }
}
