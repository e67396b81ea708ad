//! Result column names as Postgres gives them: `SELECT 1` is `?column?`,
//! `SELECT now()` is `now`, `SELECT x::text` is `x`, `SELECT '1'::int` is
//! `int4` (Postgres' `FigureColname`).
//!
//! DataFusion names an unaliased expression by its full text
//! (`vector_dims(t.v)`, `Int64(1)`) and needs the names of one projection to
//! be unique, while Postgres repeats names freely (`SELECT 1, 2` is two
//! `?column?`). So the plan keeps DataFusion's names and only the rows sent
//! to a client carry Postgres' ([`PostgresNames::apply`]).

use std::sync::Arc;

use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{
    AccessExpr, Expr, Ident, ObjectNamePart, Query, SelectItem, SetExpr, Statement, Subscript,
    Value,
};

/// Postgres' name for a column it cannot name.
const UNNAMED: &str = "?column?";

/// One item of a SELECT list.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Item {
    /// One column with this name.
    Named(String),
    /// `*` or `t.*`: the columns keep the names DataFusion gave them.
    Wildcard,
}

/// The output names of a query's SELECT list, to put on its result schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresNames {
    items: Vec<Item>,
}

impl PostgresNames {
    /// The names for `statement`'s result, when it is a query whose SELECT
    /// list can be read (the first branch of a set operation, as Postgres).
    pub fn of(statement: &DFStatement) -> Option<Self> {
        let DFStatement::Statement(statement) = statement else {
            return None;
        };
        let Statement::Query(query) = statement.as_ref() else {
            return None;
        };
        let projection = select_list(query)?;
        let mut items = Vec::with_capacity(projection.len());
        for item in projection {
            items.push(match item {
                SelectItem::UnnamedExpr(expr) => Item::Named(postgres_name(expr)),
                SelectItem::ExprWithAlias { alias, .. } => Item::Named(normalize(alias)),
                SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..) => Item::Wildcard,
                SelectItem::ExprWithAliases { .. } => return None,
            });
        }
        Some(Self { items })
    }

    /// `schema` with Postgres' names, or `None` when the SELECT list does
    /// not map onto its columns one to one (more than one `*`).
    pub fn apply(&self, schema: &SchemaRef) -> Option<SchemaRef> {
        let wildcards = self.items.iter().filter(|i| **i == Item::Wildcard).count();
        let fields = schema.fields();
        let named = self.items.len() - wildcards;
        let expanded = match wildcards {
            0 if named == fields.len() => 0,
            1 if named <= fields.len() => fields.len() - named,
            _ => return None,
        };
        let mut renamed = Vec::with_capacity(fields.len());
        let mut position = 0;
        for item in &self.items {
            match item {
                Item::Named(name) => {
                    let field = fields.get(position)?;
                    renamed.push(Arc::new(Field::clone(field).with_name(name.clone())));
                    position += 1;
                }
                Item::Wildcard => {
                    renamed.extend(fields.iter().skip(position).take(expanded).cloned());
                    position += expanded;
                }
            }
        }
        Some(Arc::new(Schema::new_with_metadata(
            renamed,
            schema.metadata().clone(),
        )))
    }
}

/// The SELECT list of a query's first SELECT.
/// Postgres' name for the unaliased SELECT item `expr`.
pub(crate) fn postgres_name(expr: &Expr) -> String {
    figure_name(expr).map_or_else(|| UNNAMED.to_string(), |(name, _)| name)
}

/// The SELECT list that names a query's columns: its own, or the first
/// branch's of a set operation.
pub(crate) fn select_list_mut(query: &mut Query) -> Option<&mut Vec<SelectItem>> {
    let mut body = query.body.as_mut();
    loop {
        match body {
            SetExpr::Select(select) => return Some(&mut select.projection),
            SetExpr::Query(inner) => body = inner.body.as_mut(),
            SetExpr::SetOperation { left, .. } => body = left.as_mut(),
            _ => return None,
        }
    }
}

fn select_list(query: &Query) -> Option<&[SelectItem]> {
    let mut body = query.body.as_ref();
    loop {
        match body {
            SetExpr::Select(select) => return Some(&select.projection),
            SetExpr::Query(inner) => body = inner.body.as_ref(),
            SetExpr::SetOperation { left, .. } => body = left.as_ref(),
            _ => return None,
        }
    }
}

/// How sure a name is: a cast names its result after its type only when
/// its operand has no better name (Postgres' "strength").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Strength {
    TypeName,
    Strong,
}

/// Postgres' name for an expression, `None` for `?column?`.
fn figure_name(expr: &Expr) -> Option<(String, Strength)> {
    use Strength::Strong;
    let strong = |name: &str| Some((name.to_string(), Strong));
    match expr {
        Expr::Identifier(ident) => Some((normalize(ident), Strong)),
        Expr::CompoundIdentifier(parts) => parts.last().map(|i| (normalize(i), Strong)),
        Expr::Function(function) => match function.name.0.last()? {
            // What `'t'::regclass` and `'integer'::regtype` are planned as: named like the literal
            // it stands for, by the cast around it.
            ObjectNamePart::Identifier(ident)
                if crate::pg::reg_casts::LOOKUPS.contains(&ident.value.as_str()) =>
            {
                None
            }
            ObjectNamePart::Identifier(ident) => Some((normalize(ident), Strong)),
            ObjectNamePart::Function(_) => None,
        },
        Expr::Cast {
            expr, data_type, ..
        } => match figure_name(expr) {
            Some(named @ (_, Strong)) => Some(named),
            _ => Some((type_name(&data_type.to_string()), Strength::TypeName)),
        },
        Expr::TypedString(typed) => {
            Some((type_name(&typed.data_type.to_string()), Strength::TypeName))
        }
        Expr::Value(value) => match value.value {
            Value::Boolean(_) => Some(("bool".into(), Strength::TypeName)),
            _ => None,
        },
        Expr::Nested(inner) | Expr::Collate { expr: inner, .. } => figure_name(inner),
        Expr::CompoundFieldAccess { root, access_chain } => match access_chain.last()? {
            AccessExpr::Dot(field) => figure_name(field),
            AccessExpr::Subscript(Subscript::Index { index }) => match index {
                Expr::Value(v) => match &v.value {
                    Value::SingleQuotedString(key) | Value::DoubleQuotedString(key) => strong(key),
                    _ => figure_name(root),
                },
                _ => figure_name(root),
            },
            AccessExpr::Subscript(_) => figure_name(root),
        },
        Expr::Subquery(query) => match select_list(query)?.first()? {
            SelectItem::UnnamedExpr(expr) => figure_name(expr),
            SelectItem::ExprWithAlias { alias, .. } => Some((normalize(alias), Strong)),
            _ => None,
        },
        Expr::Case { .. } => strong("case"),
        Expr::Exists { .. } => strong("exists"),
        Expr::Array(_) => strong("array"),
        Expr::Tuple(_) => strong("row"),
        Expr::Extract { .. } => strong("extract"),
        Expr::Substring { .. } => strong("substring"),
        Expr::Trim { .. } => strong("btrim"),
        Expr::Position { .. } => strong("position"),
        Expr::Overlay { .. } => strong("overlay"),
        Expr::Ceil { .. } => strong("ceil"),
        Expr::Floor { .. } => strong("floor"),
        Expr::Interval(_) => strong("interval"),
        Expr::AtTimeZone { .. } => strong("timezone"),
        _ => None,
    }
}

/// An identifier as Postgres stores it: folded to lower case unless quoted.
fn normalize(ident: &Ident) -> String {
    match ident.quote_style {
        Some(_) => ident.value.clone(),
        None => ident.value.to_lowercase(),
    }
}

/// Postgres' internal name of a type written in SQL (`INT` is `int4`),
/// without modifiers (`VARCHAR(10)` is `varchar`, `VECTOR(3)` is `vector`).
fn type_name(written: &str) -> String {
    let mut bare = String::with_capacity(written.len());
    let mut depth = 0usize;
    for c in written.chars() {
        match c {
            '(' | '[' => depth += 1,
            ')' | ']' => depth = depth.saturating_sub(1),
            _ if depth == 0 => bare.push(c.to_ascii_lowercase()),
            _ => {}
        }
    }
    let bare = bare.split_whitespace().collect::<Vec<_>>().join(" ");
    let internal = match bare.as_str() {
        "int" | "integer" | "int4" => "int4",
        "bigint" | "int8" => "int8",
        "smallint" | "int2" => "int2",
        "real" | "float4" => "float4",
        "double precision" | "double" | "float" | "float8" => "float8",
        "boolean" | "bool" => "bool",
        "character varying" | "varchar" => "varchar",
        "character" | "char" => "bpchar",
        "decimal" | "dec" | "numeric" => "numeric",
        "timestamp with time zone" | "timestamptz" => "timestamptz",
        "timestamp without time zone" | "timestamp" => "timestamp",
        "time with time zone" | "timetz" => "timetz",
        "time without time zone" | "time" => "time",
        other => other.rsplit('.').next().unwrap_or(other),
    };
    internal.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::DataType;
    use datafusion::sql::parser::DFParser;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;

    fn names(sql: &str, columns: usize) -> Option<Vec<String>> {
        let statement = DFParser::parse_sql_with_dialect(sql, &PostgreSqlDialect {})
            .expect("parses")
            .pop_front()
            .expect("one statement");
        let schema: SchemaRef = Arc::new(Schema::new(
            (0..columns)
                .map(|i| Field::new(format!("df{i}"), DataType::Int64, true))
                .collect::<Vec<_>>(),
        ));
        let renamed = PostgresNames::of(&statement)?.apply(&schema)?;
        Some(renamed.fields().iter().map(|f| f.name().clone()).collect())
    }

    #[test]
    fn names_as_postgres() {
        let cases = [
            ("SELECT 1", vec!["?column?"]),
            ("SELECT 1, 2", vec!["?column?", "?column?"]),
            ("SELECT now()", vec!["now"]),
            ("SELECT vector_dims(v) FROM t", vec!["vector_dims"]),
            ("SELECT count(*), COUNT(x) FROM t", vec!["count", "count"]),
            ("SELECT t.Name, \"Mixed\" FROM t", vec!["name", "Mixed"]),
            (
                "SELECT x::text, '1'::int, 2::BIGINT FROM t",
                vec!["x", "int4", "int8"],
            ),
            ("SELECT CAST(1.5 AS DOUBLE PRECISION)", vec!["float8"]),
            ("SELECT '[1,2]'::vector(2)", vec!["vector"]),
            ("SELECT DATE '2020-01-01', true", vec!["date", "bool"]),
            ("SELECT a + 1, -a, a IS NULL FROM t", vec!["?column?"; 3]),
            (
                "SELECT CASE WHEN a THEN 1 END, EXISTS (SELECT 1)",
                vec!["case", "exists"],
            ),
            ("SELECT (SELECT max(a) FROM t)", vec!["max"]),
            ("SELECT ML_PREDICT('m', a)['label'] FROM t", vec!["label"]),
            ("SELECT 1 AS One, 2 AS \"Two\"", vec!["one", "Two"]),
            (
                "SELECT CURRENT_TIMESTAMP, extract(year FROM d) FROM t",
                vec!["current_timestamp", "extract"],
            ),
            ("SELECT a FROM t UNION ALL SELECT 1", vec!["a"]),
        ];
        for (sql, expected) in cases {
            assert_eq!(
                names(sql, expected.len()),
                Some(expected.iter().map(|s| s.to_string()).collect()),
                "{sql}"
            );
        }
    }

    #[test]
    fn wildcards_keep_their_columns() {
        assert_eq!(
            names("SELECT 1, *, now() FROM t", 4),
            Some(vec![
                "?column?".into(),
                "df1".into(),
                "df2".into(),
                "now".into()
            ])
        );
        assert_eq!(names("SELECT *, * FROM t", 4), None);
        assert_eq!(names("VALUES (1)", 1), None);
        assert_eq!(names("SELECT 1, 2", 3), None);
    }
}
