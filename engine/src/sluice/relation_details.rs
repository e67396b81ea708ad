//! What `pg_catalog` shows of Sluice's own relations: the indexes of a
//! durable table and the query of a materialized view. Lives here, where
//! the engine is assembled, so `pg` need not import storage or streaming.

use datafusion::catalog::TableProvider;

use crate::pg::relations_catalog::{IndexDetail, RelationDetail, RelationDetails};
use crate::storage::DurableTable;
use crate::storage::vector_index::{VectorIndex, limits};
use crate::streaming::view::MaterializedViewTable;

/// [`RelationDetails`] by the table's concrete type.
#[derive(Debug)]
pub(crate) struct SluiceRelationDetails;

impl RelationDetails for SluiceRelationDetails {
    fn describe(&self, table: &dyn TableProvider) -> RelationDetail {
        let any: &dyn std::any::Any = table;
        if let Some(durable) = any.downcast_ref::<DurableTable>() {
            return RelationDetail::Table(
                durable.vector_indexes().iter().map(index_detail).collect(),
            );
        }
        if let Some(view) = any.downcast_ref::<MaterializedViewTable>() {
            return RelationDetail::MaterializedView(view.definition().map(str::to_owned));
        }
        RelationDetail::Other
    }

    fn stored_bytes(&self, table: &dyn TableProvider) -> Option<u64> {
        let any: &dyn std::any::Any = table;
        any.downcast_ref::<DurableTable>()
            .map(DurableTable::stored_bytes)
    }
}

/// An HNSW index as `pg_get_indexdef` describes it: options only where
/// they differ from the defaults, as pgvector shows what was given.
fn index_detail(index: &VectorIndex) -> IndexDetail {
    let mut options = Vec::new();
    if index.m != limits::DEFAULT_M {
        options.push(("m".to_owned(), index.m.to_string()));
    }
    if index.ef_construction != limits::DEFAULT_EF_CONSTRUCTION {
        options.push((
            "ef_construction".to_owned(),
            index.ef_construction.to_string(),
        ));
    }
    IndexDetail {
        name: index.name.clone(),
        column: index.column.clone(),
        access_method: "hnsw",
        operator_class: index.metric.operator_class(),
        options,
    }
}
