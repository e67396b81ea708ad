//! Sluice's relations that `datafusion-pg-catalog` cannot see: vector
//! indexes (rows of `pg_class` with `relkind = 'i'`, `pg_index`, the
//! `hnsw` access method in `pg_am`) and materialized views (`relkind =
//! 'm'`, `pg_matviews`), so psql's `\d t`, `\di` and `\dm` and drivers'
//! index metadata show them.
//!
//! The library builds `pg_class` from DataFusion's `TableProvider`s, which
//! know a table type (base, view, temporary) and nothing of indexes; what
//! it lacks comes from a [`RelationDetails`] the engine supplies, so this
//! module stays independent of storage and streaming.

use std::collections::HashSet;
use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, BooleanArray, RecordBatch, StringArray, new_null_array};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Schema, SchemaRef};
use datafusion::catalog::{CatalogProviderList, SchemaProvider, Session, TableProvider};
use datafusion::common::ScalarValue;
use datafusion::datasource::TableType;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::error::Result;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;
use datafusion_pg_catalog::pg_catalog::ArrowTable;
use futures::FutureExt;

use crate::pg::catalog_rows::{LibraryClasses, copy_row, find_oid, read_all, rows, with_rows};

/// The OID of the `hnsw` access method in `pg_am`. pgvector's is assigned
/// when its extension is created; Sluice's is fixed, outside the range the
/// library counts relation OIDs in (from 16384) and the range of index
/// OIDs ([`index_oid`]).
pub const HNSW_ACCESS_METHOD_OID: u32 = 0x3FFF_FFFF;

/// What the engine knows of a relation beyond its `TableProvider`.
pub trait RelationDetails: Debug + Send + Sync {
    /// The kind of `table` and its indexes.
    fn describe(&self, table: &dyn TableProvider) -> RelationDetail;

    /// Bytes `table` keeps on storage; `None` for a relation that keeps
    /// none (a view, a catalog table).
    fn stored_bytes(&self, _table: &dyn TableProvider) -> Option<u64> {
        None
    }
}

/// A relation as `pg_catalog` shows it.
#[derive(Debug, Clone)]
pub enum RelationDetail {
    /// A table, with its indexes.
    Table(Vec<IndexDetail>),
    /// A materialized view, with its query's text.
    MaterializedView(Option<String>),
    /// Anything else: the library's row stands.
    Other,
}

/// One index of a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexDetail {
    /// The index's name, unique among the relations of its schema.
    pub name: String,
    /// The indexed column.
    pub column: String,
    /// The access method (`hnsw`).
    pub access_method: &'static str,
    /// The column's operator class (`vector_cosine_ops`, …).
    pub operator_class: &'static str,
    /// Options given at creation, as `WITH (name = 'value', …)` shows them.
    pub options: Vec<(String, String)>,
}

/// An index with where it lives.
#[derive(Debug, Clone)]
pub(crate) struct IndexRelation {
    pub oid: u32,
    pub schema: String,
    pub table: String,
    /// The indexed column's position in the table, from 1.
    pub attnum: usize,
    pub detail: IndexDetail,
}

impl IndexRelation {
    /// What `pg_get_indexdef` returns, in Postgres' form: psql's `\d t`
    /// shows what follows `USING`.
    pub(crate) fn definition(&self) -> String {
        let mut text = format!(
            "CREATE INDEX {} ON {}.{} USING {} ({} {})",
            quote_ident(&self.detail.name),
            quote_ident(&self.schema),
            quote_ident(&self.table),
            self.detail.access_method,
            quote_ident(&self.detail.column),
            self.detail.operator_class
        );
        if !self.detail.options.is_empty() {
            let options: Vec<String> = self
                .detail
                .options
                .iter()
                .map(|(name, value)| format!("{name}='{value}'"))
                .collect();
            text.push_str(&format!(" WITH ({})", options.join(", ")));
        }
        text
    }
}

/// A materialized view with where it lives.
#[derive(Debug, Clone)]
pub(crate) struct ViewRelation {
    pub schema: String,
    pub name: String,
    pub definition: Option<String>,
}

/// Every index and materialized view of every schema.
#[derive(Debug, Default)]
pub(crate) struct SluiceRelations {
    pub indexes: Vec<IndexRelation>,
    /// Materialized views.
    pub views: Vec<ViewRelation>,
    /// Plain views (`CREATE VIEW`), with their definitions.
    pub plain_views: Vec<ViewRelation>,
    /// (schema, table) of the tables that have an index.
    pub indexed: HashSet<(String, String)>,
}

impl SluiceRelations {
    /// Walks `catalogs`. Sluice's schemas are DataFusion's in-memory ones,
    /// whose `table` lookups are ready at once: a lookup that would have to
    /// wait is skipped rather than blocking a catalog query (and catalog
    /// functions, which are synchronous, can walk too).
    pub(crate) fn gather(
        catalogs: &dyn CatalogProviderList,
        details: &dyn RelationDetails,
    ) -> Self {
        let mut relations = Self::default();
        for catalog_name in catalogs.catalog_names() {
            let Some(catalog) = catalogs.catalog(&catalog_name) else {
                continue;
            };
            for schema_name in catalog.schema_names() {
                if schema_name == "pg_catalog" || schema_name == "information_schema" {
                    continue;
                }
                let Some(schema) = catalog.schema(&schema_name) else {
                    continue;
                };
                for table_name in schema.table_names() {
                    let Some(Ok(Some(table))) = schema.table(&table_name).now_or_never() else {
                        continue;
                    };
                    relations.add(&schema_name, &table_name, table.as_ref(), details);
                }
            }
        }
        relations
            .indexes
            .sort_by(|a, b| (&a.schema, &a.detail.name).cmp(&(&b.schema, &b.detail.name)));
        relations
    }

    fn add(
        &mut self,
        schema: &str,
        table_name: &str,
        table: &dyn TableProvider,
        details: &dyn RelationDetails,
    ) {
        match details.describe(table) {
            RelationDetail::Table(indexes) => {
                let columns = table.schema();
                for detail in indexes {
                    let Ok(position) = columns.index_of(&detail.column) else {
                        continue;
                    };
                    self.indexed
                        .insert((schema.to_owned(), table_name.to_owned()));
                    self.indexes.push(IndexRelation {
                        oid: index_oid(schema, &detail.name),
                        schema: schema.to_owned(),
                        table: table_name.to_owned(),
                        attnum: position + 1,
                        detail,
                    });
                }
            }
            RelationDetail::MaterializedView(definition) => self.views.push(ViewRelation {
                schema: schema.to_owned(),
                name: table_name.to_owned(),
                definition,
            }),
            RelationDetail::Other if table.table_type() == TableType::View => {
                self.plain_views.push(ViewRelation {
                    schema: schema.to_owned(),
                    name: table_name.to_owned(),
                    definition: table.get_table_definition().map(view_query),
                })
            }
            RelationDetail::Other => {}
        }
    }

    fn is_materialized_view(&self, schema: &str, name: &str) -> bool {
        self.views
            .iter()
            .any(|v| v.schema == schema && v.name == name)
    }

    /// The index whose OID is `oid`.
    pub(crate) fn index(&self, oid: u32) -> Option<&IndexRelation> {
        self.indexes.iter().find(|i| i.oid == oid)
    }
}

/// The query of a `CREATE VIEW` statement (what `pg_views.definition`
/// holds); the text unchanged when it is not one.
fn view_query(definition: &str) -> String {
    use datafusion::sql::sqlparser::ast::Statement;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;
    match Parser::parse_sql(&PostgreSqlDialect {}, definition).as_deref() {
        Ok([Statement::CreateView(view)]) => view.query.to_string(),
        _ => definition.to_owned(),
    }
}

/// An index's OID: a hash of its qualified name, so it is the same after a
/// restart and in every table that names it, in [2^30, 2^31) where the
/// library's counted relation OIDs (from 16384) never reach. FNV-1a by hand:
/// four lines, and std's hasher is not promised to stay the same.
pub(crate) fn index_oid(schema: &str, name: &str) -> u32 {
    let hash = format!("{schema}.{name}")
        .bytes()
        .fold(0x811c_9dc5_u32, |h, b| {
            (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
        });
    0x4000_0000 | (hash & 0x3FFF_FFFF)
}

/// `name` quoted when Postgres would quote it.
fn quote_ident(name: &str) -> String {
    let plain = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if plain {
        name.to_owned()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

/// `pg_am` with the `hnsw` access method, a copy of btree's row.
pub(crate) fn with_access_methods(pg_am: &ArrowTable) -> Result<ArrowTable> {
    const BTREE: u32 = 403;
    let (batch, row) = find_oid(pg_am.data(), BTREE)?;
    let hnsw = copy_row(
        &batch,
        row,
        &[
            (
                "oid",
                ScalarValue::Int64(Some(i64::from(HNSW_ACCESS_METHOD_OID))),
            ),
            ("amname", ScalarValue::from("hnsw")),
            ("amhandler", ScalarValue::from("hnswhandler")),
        ],
    )?;
    with_rows(pg_am, vec![hnsw])
}

/// The parts every replaced catalog table shares.
#[derive(Debug, Clone)]
pub(crate) struct RelationsSource {
    /// The library's `pg_catalog`, whose tables these extend.
    pub library: Arc<dyn SchemaProvider>,
    pub catalogs: Arc<dyn CatalogProviderList>,
    pub details: Arc<dyn RelationDetails>,
}

impl RelationsSource {
    fn relations(&self) -> SluiceRelations {
        SluiceRelations::gather(self.catalogs.as_ref(), self.details.as_ref())
    }
}

/// A replaced catalog table: how its rows are made.
#[async_trait]
trait CatalogRows: Debug + Send + Sync {
    fn schema(&self) -> SchemaRef;
    async fn batches(&self, state: &dyn Session) -> Result<Vec<RecordBatch>>;
}

/// A [`CatalogRows`] served as a table.
#[derive(Debug)]
pub(crate) struct CatalogTable(Arc<dyn CatalogRows>);

#[async_trait]
impl TableProvider for CatalogTable {
    fn schema(&self) -> SchemaRef {
        self.0.schema()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let batches = self.0.batches(state).await?;
        Ok(MemorySourceConfig::try_new_exec(
            &[batches],
            self.schema(),
            projection.cloned(),
        )?)
    }
}

/// The catalog table `name` replaces, if Sluice replaces it; `library` is
/// the library's own table of that name.
pub(crate) fn replacement(
    name: &str,
    library: Arc<dyn TableProvider>,
    source: &RelationsSource,
) -> Option<Arc<dyn TableProvider>> {
    let source = source.clone();
    let rows: Arc<dyn CatalogRows> = match name {
        "pg_class" => Arc::new(PgClass { library, source }),
        "pg_index" => Arc::new(PgIndex { library, source }),
        "pg_matviews" => Arc::new(ViewRows {
            library,
            source,
            materialized: true,
        }),
        "pg_views" => Arc::new(ViewRows {
            library,
            source,
            materialized: false,
        }),
        _ => return None,
    };
    Some(Arc::new(CatalogTable(rows)))
}

/// `pg_class`: materialized views as `'m'`, `relhasindex` of indexed
/// tables, a row per index, and the columns the library lacks.
#[derive(Debug)]
struct PgClass {
    library: Arc<dyn TableProvider>,
    source: RelationsSource,
}

/// `pg_class` columns the library lacks, always NULL in Sluice (no access
/// lists, no storage parameters), placed before `relpartbound` as in
/// Postgres: psql's `\d+` reads `reloptions`, DBeaver `relacl`.
const CLASS_COLUMNS_LIBRARY_LACKS: [&str; 2] = ["relacl", "reloptions"];

impl PgClass {
    /// `batch` (of the library's schema) with the columns it lacks, NULL.
    fn widened(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        let schema = self.schema();
        let columns = schema
            .fields()
            .iter()
            .map(|field| match batch.column_by_name(field.name()) {
                Some(column) => Arc::clone(column),
                None => new_null_array(field.data_type(), batch.num_rows()),
            })
            .collect();
        Ok(RecordBatch::try_new(schema, columns)?)
    }
}

#[async_trait]
impl CatalogRows for PgClass {
    fn schema(&self) -> SchemaRef {
        let library = self.library.schema();
        let text_array = DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true)));
        let mut fields: Vec<FieldRef> = Vec::with_capacity(library.fields().len() + 2);
        for field in library.fields() {
            if field.name() == "relpartbound" {
                fields.extend(
                    CLASS_COLUMNS_LIBRARY_LACKS
                        .map(|name| Arc::new(Field::new(name, text_array.clone(), true))),
                );
            }
            fields.push(Arc::clone(field));
        }
        Arc::new(Schema::new(fields))
    }

    async fn batches(&self, state: &dyn Session) -> Result<Vec<RecordBatch>> {
        let classes = LibraryClasses::read(state, self.source.library.as_ref()).await?;
        let relations = self.source.relations();
        let mut out = Vec::with_capacity(classes.batches.len() + relations.indexes.len());
        for batch in &classes.batches {
            let names = classes.names(batch);
            let kinds: Vec<Option<String>> = rows(batch, &["relkind"])
                .iter()
                .zip(&names)
                .map(|(row, name)| match name {
                    Some((schema, name)) if relations.is_materialized_view(schema, name) => {
                        Some("m".to_owned())
                    }
                    _ => row[0].as_text(),
                })
                .collect();
            let has_index: Vec<Option<bool>> = rows(batch, &["relhasindex"])
                .iter()
                .zip(&names)
                .map(|(row, name)| {
                    let indexed = name.as_ref().is_some_and(|n| relations.indexed.contains(n));
                    Some(indexed || row[0].as_bool() == Some(true))
                })
                .collect();
            let batch = replace_column(batch, "relkind", Arc::new(StringArray::from(kinds)))?;
            out.push(replace_column(
                &batch,
                "relhasindex",
                Arc::new(BooleanArray::from(has_index)),
            )?);
        }
        for index in &relations.indexes {
            let Some((batch, row)) = classes.row_of(&index.schema, &index.table) else {
                continue;
            };
            let oid = ScalarValue::Int64(Some(i64::from(index.oid)));
            out.push(copy_row(
                &batch,
                row,
                &[
                    ("oid", oid.clone()),
                    ("relfilenode", oid),
                    ("relname", ScalarValue::from(index.detail.name.as_str())),
                    ("relkind", ScalarValue::from("i")),
                    (
                        "relam",
                        ScalarValue::Int64(Some(i64::from(HNSW_ACCESS_METHOD_OID))),
                    ),
                    ("reltype", ScalarValue::Int64(Some(0))),
                    ("relnatts", ScalarValue::Int64(Some(1))),
                    ("relhasindex", ScalarValue::Boolean(Some(false))),
                ],
            )?);
        }
        out.iter().map(|batch| self.widened(batch)).collect()
    }
}

/// `batch` with its column `name` (when it has one) replaced by `values`,
/// cast to the column's type.
fn replace_column(batch: &RecordBatch, name: &str, values: ArrayRef) -> Result<RecordBatch> {
    let schema = batch.schema();
    let Ok(at) = schema.index_of(name) else {
        return Ok(batch.clone());
    };
    let mut columns = batch.columns().to_vec();
    let wanted = schema.field(at).data_type();
    columns[at] = datafusion::arrow::compute::cast(&values, wanted)
        .unwrap_or_else(|_| new_null_array(wanted, batch.num_rows()));
    Ok(RecordBatch::try_new(schema, columns)?)
}

/// `pg_index`: the library's rows (Postgres' own catalog indexes) and one
/// per Sluice index, a single-column, non-unique, valid index.
#[derive(Debug)]
struct PgIndex {
    library: Arc<dyn TableProvider>,
    source: RelationsSource,
}

#[async_trait]
impl CatalogRows for PgIndex {
    fn schema(&self) -> SchemaRef {
        self.library.schema()
    }

    async fn batches(&self, state: &dyn Session) -> Result<Vec<RecordBatch>> {
        let mut out = read_all(state, self.library.as_ref()).await?;
        let relations = self.source.relations();
        if relations.indexes.is_empty() {
            return Ok(out);
        }
        let Some(template) = out.iter().find(|b| b.num_rows() > 0).cloned() else {
            return Ok(out);
        };
        let classes = LibraryClasses::read(state, self.source.library.as_ref()).await?;
        for index in &relations.indexes {
            let Some((table_oid, _)) = classes
                .by_name
                .get(&(index.schema.clone(), index.table.clone()))
            else {
                continue;
            };
            let yes = ScalarValue::Boolean(Some(true));
            let no = ScalarValue::Boolean(Some(false));
            out.push(copy_row(
                &template,
                0,
                &[
                    ("indexrelid", ScalarValue::Int64(Some(i64::from(index.oid)))),
                    ("indrelid", ScalarValue::Int64(Some(i64::from(*table_oid)))),
                    ("indnatts", ScalarValue::Int64(Some(1))),
                    ("indnkeyatts", ScalarValue::Int64(Some(1))),
                    ("indisunique", no.clone()),
                    ("indnullsnotdistinct", no.clone()),
                    ("indisprimary", no.clone()),
                    ("indisexclusion", no.clone()),
                    ("indimmediate", yes.clone()),
                    ("indisclustered", no.clone()),
                    ("indisvalid", yes.clone()),
                    ("indcheckxmin", no.clone()),
                    ("indisready", yes.clone()),
                    ("indislive", yes),
                    ("indisreplident", no),
                    (
                        "indkey",
                        ScalarValue::from(index.attnum.to_string().as_str()),
                    ),
                    ("indcollation", ScalarValue::from("0")),
                    ("indclass", ScalarValue::from("0")),
                    ("indoption", ScalarValue::from("0")),
                    ("indexprs", ScalarValue::Utf8(None)),
                    ("indpred", ScalarValue::Utf8(None)),
                ],
            )?);
        }
        Ok(out)
    }
}

/// `pg_matviews` (one row per materialized view) or `pg_views` (one per
/// plain view): the library's are empty.
#[derive(Debug)]
struct ViewRows {
    library: Arc<dyn TableProvider>,
    source: RelationsSource,
    materialized: bool,
}

#[async_trait]
impl CatalogRows for ViewRows {
    fn schema(&self) -> SchemaRef {
        self.library.schema()
    }

    async fn batches(&self, _state: &dyn Session) -> Result<Vec<RecordBatch>> {
        let relations = self.source.relations();
        let views = if self.materialized {
            relations.views
        } else {
            relations.plain_views
        };
        let text = |value: &dyn Fn(&ViewRelation) -> Option<String>| -> ArrayRef {
            Arc::new(StringArray::from(
                views.iter().map(value).collect::<Vec<_>>(),
            ))
        };
        let flag =
            |value: bool| -> ArrayRef { Arc::new(BooleanArray::from(vec![value; views.len()])) };
        let columns = |name: &str| -> Option<ArrayRef> {
            Some(match name {
                "schemaname" => text(&|v| Some(v.schema.clone())),
                "matviewname" | "viewname" => text(&|v| Some(v.name.clone())),
                "matviewowner" | "viewowner" => text(&|_| Some(OWNER.to_owned())),
                "hasindexes" => flag(false),
                "ispopulated" => flag(true),
                "definition" => text(&|v| v.definition.clone()),
                _ => return None,
            })
        };
        Ok(vec![batch_of(self.schema(), views.len(), columns)?])
    }
}

/// The owner every relation shows: Sluice has no per-relation owners, and
/// the library's `pg_get_userbyid` names this one.
const OWNER: &str = "postgres";

/// `pg_indexes`: one row per index (the library has no such view).
#[derive(Debug)]
pub(crate) struct PgIndexes {
    source: RelationsSource,
}

impl PgIndexes {
    /// The view over `source`'s indexes.
    pub(crate) fn table(source: &RelationsSource) -> Arc<dyn TableProvider> {
        Arc::new(CatalogTable(Arc::new(Self {
            source: source.clone(),
        })))
    }
}

#[async_trait]
impl CatalogRows for PgIndexes {
    fn schema(&self) -> SchemaRef {
        let fields = [
            "schemaname",
            "tablename",
            "indexname",
            "tablespace",
            "indexdef",
        ]
        .map(|name| Field::new(name, DataType::Utf8, true));
        Arc::new(Schema::new(fields.to_vec()))
    }

    async fn batches(&self, _state: &dyn Session) -> Result<Vec<RecordBatch>> {
        let indexes = self.source.relations().indexes;
        let text = |value: &dyn Fn(&IndexRelation) -> Option<String>| -> ArrayRef {
            Arc::new(StringArray::from(
                indexes.iter().map(value).collect::<Vec<_>>(),
            ))
        };
        let columns = |name: &str| -> Option<ArrayRef> {
            Some(match name {
                "schemaname" => text(&|i| Some(i.schema.clone())),
                "tablename" => text(&|i| Some(i.table.clone())),
                "indexname" => text(&|i| Some(i.detail.name.clone())),
                "indexdef" => text(&|i| Some(i.definition())),
                _ => return None,
            })
        };
        Ok(vec![batch_of(self.schema(), indexes.len(), columns)?])
    }
}

/// A batch of `schema` with `rows` rows: each column from `column` by
/// name, cast to its type, NULL where it gives none.
fn batch_of(
    schema: SchemaRef,
    rows: usize,
    column: impl Fn(&str) -> Option<ArrayRef>,
) -> Result<RecordBatch> {
    let columns = schema
        .fields()
        .iter()
        .map(|field| {
            column(field.name())
                .and_then(|values| {
                    datafusion::arrow::compute::cast(&values, field.data_type()).ok()
                })
                .unwrap_or_else(|| new_null_array(field.data_type(), rows))
        })
        .collect();
    Ok(RecordBatch::try_new(schema, columns)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_oids_are_stable_and_in_their_own_range() {
        let oid = index_oid("public", "docs_v_idx");
        assert_eq!(oid, index_oid("public", "docs_v_idx"));
        assert_ne!(oid, index_oid("other", "docs_v_idx"));
        assert!((0x4000_0000..0x8000_0000).contains(&oid));
        assert!(i32::try_from(oid).is_ok());
    }

    #[test]
    fn index_definition_reads_like_postgres() {
        let index = IndexRelation {
            oid: 1,
            schema: "public".into(),
            table: "Docs".into(),
            attnum: 3,
            detail: IndexDetail {
                name: "docs_v".into(),
                column: "v".into(),
                access_method: "hnsw",
                operator_class: "vector_l2_ops",
                options: vec![("m".into(), "8".into())],
            },
        };
        assert_eq!(
            index.definition(),
            "CREATE INDEX docs_v ON public.\"Docs\" USING hnsw (v vector_l2_ops) WITH (m='8')"
        );
    }
}
