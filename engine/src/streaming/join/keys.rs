//! Finds a join's equality keys as columns of its two inputs' rows, so the
//! operator can index its kept rows by them ([`super::key_index`]).
//!
//! The keys are read off the optimised logical plan's join and followed
//! down to the feeds (the inputs as the operator keeps them) through the
//! nodes that pass columns on unchanged: filters, aliases and projections
//! of plain columns. A key that is computed (`a.x + 1 = b.y`), or whose two
//! sides differ in type (the join would cast), gives no index: the join
//! then meets every kept row, as correct and only slower.

use datafusion::arrow::datatypes::DataType;
use datafusion::logical_expr::{Expr, Join, LogicalPlan};

use super::operator::JoinKeys;
use crate::streaming::feed::FeedNode;

/// The equality keys of the join in `plan` (a join over feeds 0 and 1 with
/// the projections and filters above it) as column indices of each feed's
/// rows, if every key is a plain column of the same type on both sides.
pub fn join_keys(plan: &LogicalPlan) -> Option<JoinKeys> {
    let join = find_join(plan)?;
    if join.on.is_empty() {
        return None;
    }
    let mut keys: JoinKeys = [Vec::new(), Vec::new()];
    for (left, right) in &join.on {
        let (left_slot, left_column, left_type) = feed_column(&join.left, left)?;
        let (right_slot, right_column, right_type) = feed_column(&join.right, right)?;
        if left_type != right_type || left_slot == right_slot || left_slot > 1 || right_slot > 1 {
            return None;
        }
        keys[left_slot].push(left_column);
        keys[right_slot].push(right_column);
    }
    Some(keys)
}

fn find_join(plan: &LogicalPlan) -> Option<&Join> {
    match plan {
        LogicalPlan::Join(join) => Some(join),
        other => other.inputs().into_iter().find_map(find_join),
    }
}

/// The feed slot, column index and type that `expr` (a column of `plan`'s
/// output) comes from unchanged.
fn feed_column(plan: &LogicalPlan, expr: &Expr) -> Option<(usize, usize, DataType)> {
    let Expr::Column(column) = expr.clone().unalias() else {
        return None;
    };
    let mut index = plan.schema().maybe_index_of_column(&column)?;
    let mut node = plan;
    loop {
        match node {
            LogicalPlan::Filter(filter) => node = &filter.input,
            LogicalPlan::SubqueryAlias(alias) => node = &alias.input,
            LogicalPlan::Projection(projection) => {
                let Expr::Column(inner) = projection.expr.get(index)?.clone().unalias() else {
                    return None;
                };
                index = projection.input.schema().maybe_index_of_column(&inner)?;
                node = &projection.input;
            }
            LogicalPlan::Extension(extension) => {
                let feed = extension.node.as_any().downcast_ref::<FeedNode>()?;
                let field = feed.schema.field(index);
                return Some((feed.slot, index, field.data_type().clone()));
            }
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::datatypes::{Field, Schema};
    use datafusion::common::{Column, DFSchema, JoinType};
    use datafusion::logical_expr::LogicalPlanBuilder;

    use super::*;

    fn feed(slot: usize, qualifier: &str, fields: &[(&str, DataType)]) -> LogicalPlan {
        let schema = Schema::new(
            fields
                .iter()
                .map(|(name, data_type)| Field::new(*name, data_type.clone(), true))
                .collect::<Vec<_>>(),
        );
        let schema = DFSchema::try_from_qualified_schema(qualifier, &schema).unwrap();
        FeedNode::plan(slot, Arc::new(schema))
    }

    #[test]
    fn keys_are_followed_through_aliases_and_projections_to_the_feeds() {
        let left = feed(0, "a", &[("x", DataType::Int64), ("k", DataType::Utf8)]);
        let right = LogicalPlanBuilder::from(feed(
            1,
            "b",
            &[("k", DataType::Utf8), ("y", DataType::Int64)],
        ))
        .project(vec![
            Expr::Column(Column::new(Some("b"), "y")),
            Expr::Column(Column::new(Some("b"), "k")).alias("kk"),
        ])
        .unwrap()
        .alias("c")
        .unwrap()
        .build()
        .unwrap();
        let plan = LogicalPlanBuilder::from(left)
            .join(
                right,
                JoinType::Inner,
                (
                    vec![Column::new(Some("a"), "k")],
                    vec![Column::new(Some("c"), "kk")],
                ),
                None,
            )
            .unwrap()
            .build()
            .unwrap();
        assert_eq!(join_keys(&plan), Some([vec![1], vec![0]]));
    }

    #[test]
    fn computed_or_mistyped_keys_give_no_index() {
        let left = feed(0, "a", &[("x", DataType::Int64)]);
        let right = feed(1, "b", &[("y", DataType::Int32)]);
        let plan = LogicalPlanBuilder::from(left)
            .join(
                right,
                JoinType::Inner,
                (
                    vec![Column::new(Some("a"), "x")],
                    vec![Column::new(Some("b"), "y")],
                ),
                None,
            )
            .unwrap()
            .build()
            .unwrap();
        assert_eq!(join_keys(&plan), None);
        let x = Expr::Column(Column::new(Some("a"), "x"));
        assert!(feed_column(&plan, &(x.clone() + x)).is_none());
    }
}
