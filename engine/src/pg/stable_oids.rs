//! OIDs that stay the same across restarts and agree between catalog
//! tables.
//!
//! `datafusion-pg-catalog` hands out the OIDs of databases, schemas and
//! relations from a counter, in the order its tables first meet them, so a
//! table's `pg_class.oid` changed after a restart (16384 became 16455) and
//! a client holding it (DBeaver, an ORM's cache, a psql session's `\d` of
//! an OID it read before) then named another relation or none. The library
//! has no hook for an OID of the engine's own, so Sluice rewrites its
//! output: every OID the library counted (≥ 16384) in a column that names a
//! database, schema or relation is replaced by a hash of what it names
//! ([`stable_oid`]). Indexes already have hashed OIDs
//! ([`crate::pg::relations_catalog::index_oid`]); system OIDs (< 16384,
//! `pg_catalog` is 11) are left as the library gives them. The library
//! also counts `pg_catalog`'s own tables and views, which have fixed OIDs
//! in Postgres that other catalog rows name (`pg_description.classoid` is
//! 1255 for a function, clients write `'pg_class'::regclass`): those get
//! Postgres' OIDs ([`crate::pg::catalog_rows::system_relation_oids`]).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{Array, ArrayRef, AsArray, Int32Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Int32Type, SchemaRef};
use datafusion::catalog::{SchemaProvider, Session, TableProvider};
use datafusion::datasource::TableType;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;
use datafusion_pg_catalog::pg_catalog::oid_field::{OID_ALIAS_KEY, kind};

use crate::pg::catalog_rows::{read_all, rows};

/// The first OID the library counts from; below it are system objects.
const FIRST_COUNTED_OID: u32 = 16384;

/// Stable OIDs lie in [2^24, 2^30 - 2^24): above every OID the library
/// could count to and Sluice's type OIDs, below the index OIDs (from 2^30)
/// and the `hnsw` access method's.
const STABLE_OID_BASE: u32 = 1 << 24;
const STABLE_OID_SPAN: u32 = (1 << 30) - (2 << 24);

/// The OID of an object of `kind` (`"database"`, `"schema"`,
/// `"relation"`) named `name` (for a relation, `schema.name`), before
/// collisions are resolved. FNV-1a by hand, like `index_oid`: std's hasher
/// is not promised to stay the same between Rust releases.
fn stable_oid(kind: &str, name: &str) -> u32 {
    let hash = kind
        .bytes()
        .chain([0])
        .chain(name.bytes())
        .fold(0x811c_9dc5_u32, |h, b| {
            (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
        });
    STABLE_OID_BASE + hash % STABLE_OID_SPAN
}

/// The OID `pg_class` gives relation `schema.name`, for catalog functions
/// that take one (`pg_table_size`, `pg_get_viewdef`): its stable OID
/// unless a collision moved it (two names hashing alike among all of the
/// database's relations, about one chance in ten million per pair), when
/// such a function finds no relation.
pub(crate) fn relation_oid(schema: &str, name: &str) -> u32 {
    stable_oid("relation", &format!("{schema}.{name}"))
}

/// The OID `pg_database` gives database `name` (see [`relation_oid`]).
pub(crate) fn database_oid(name: &str) -> u32 {
    stable_oid("database", name)
}

/// The library's counted OIDs, each with the stable OID that replaces it.
#[derive(Debug, Default)]
pub(crate) struct StableOids {
    by_counted: HashMap<u32, u32>,
}

impl StableOids {
    /// Reads what the library's counted OIDs name from its `pg_database`,
    /// `pg_namespace` and `pg_class`; `system` holds Postgres' OIDs of
    /// `pg_catalog`'s tables and views by name.
    pub(crate) async fn read(
        state: &dyn Session,
        library: &dyn SchemaProvider,
        system: &HashMap<String, u32>,
    ) -> Result<Self> {
        let mut named: BTreeMap<(&'static str, String), u32> = BTreeMap::new();
        for (oid, name) in library_rows(state, library, "pg_database", ["oid", "datname"]).await? {
            named.insert(("database", name), oid);
        }
        let mut schemas = HashMap::new();
        for (oid, name) in library_rows(state, library, "pg_namespace", ["oid", "nspname"]).await? {
            schemas.insert(oid, name.clone());
            named.insert(("schema", name), oid);
        }
        let table = library_table(library, "pg_class").await?;
        for batch in read_all(state, table.as_ref()).await? {
            for row in rows(&batch, &["oid", "relname", "relnamespace"]) {
                let (Some(oid), Some(name), Some(schema)) = (
                    row[0].as_oid(),
                    row[1].as_text(),
                    row[2].as_oid().and_then(|n| schemas.get(&n)),
                ) else {
                    continue;
                };
                named.insert(("relation", format!("{schema}.{name}")), oid);
            }
        }
        Ok(Self::assign(named, system))
    }

    /// Stable OIDs for `named` (what each counted OID names), probing past
    /// a collision in the keys' order so the same objects always get the
    /// same OIDs; `system` holds Postgres' OIDs of `pg_catalog`'s tables
    /// and views by name.
    fn assign(named: BTreeMap<(&'static str, String), u32>, system: &HashMap<String, u32>) -> Self {
        let mut taken = HashSet::new();
        let mut by_counted = HashMap::new();
        for ((kind, name), counted) in named {
            if counted < FIRST_COUNTED_OID {
                continue;
            }
            if let Some(oid) = (kind == "relation")
                .then(|| name.strip_prefix("pg_catalog."))
                .flatten()
                .and_then(|relation| system.get(relation))
            {
                by_counted.insert(counted, *oid);
                continue;
            }
            let mut oid = stable_oid(kind, &name);
            while !taken.insert(oid) {
                oid = STABLE_OID_BASE + (oid - STABLE_OID_BASE + 1) % STABLE_OID_SPAN;
            }
            by_counted.insert(counted, oid);
        }
        Self { by_counted }
    }

    /// `batch` of catalog table `table` with its counted OIDs replaced.
    fn apply(&self, table: &str, batch: RecordBatch) -> Result<RecordBatch> {
        let schema = batch.schema();
        let columns = schema
            .fields()
            .iter()
            .zip(batch.columns())
            .map(|(field, column)| {
                let names_an_object = names_an_object(table, field.name(), field.metadata());
                if !names_an_object || field.data_type() != &DataType::Int32 {
                    return Ok(Arc::clone(column));
                }
                let values = column.as_primitive::<Int32Type>();
                let remapped: Int32Array = values
                    .iter()
                    .map(|value| value.map(|v| self.replace(v)))
                    .collect();
                Ok(Arc::new(remapped) as ArrayRef)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(RecordBatch::try_new(schema, columns)?)
    }

    fn replace(&self, value: i32) -> i32 {
        u32::try_from(value)
            .ok()
            .and_then(|oid| self.by_counted.get(&oid))
            .and_then(|oid| i32::try_from(*oid).ok())
            .unwrap_or(value)
    }
}

/// Whether column `column` of catalog table `table` holds the OIDs of
/// databases, schemas or relations: the identity column of `pg_database`,
/// `pg_namespace` and `pg_class`; every column typed `regclass` or
/// `regnamespace`; and, as Postgres names them, every `…relid` column
/// (`attrelid`, `indrelid`, `indexrelid`, `conrelid`, `typrelid`, …) and
/// `…namespace` column (`relnamespace`, `typnamespace`, …), which the
/// library's static tables do not all mark with a type.
fn names_an_object(table: &str, column: &str, metadata: &HashMap<String, String>) -> bool {
    if column == "oid" {
        return matches!(table, "pg_database" | "pg_namespace" | "pg_class");
    }
    column.ends_with("relid")
        || column.ends_with("namespace")
        || matches!(
            metadata.get(OID_ALIAS_KEY).map(String::as_str),
            Some(kind::REGCLASS | kind::REGNAMESPACE)
        )
}

/// Whether `schema` has a column [`StableOidTable`] rewrites.
fn has_object_columns(table: &str, schema: &SchemaRef) -> bool {
    schema
        .fields()
        .iter()
        .any(|f| names_an_object(table, f.name(), f.metadata()))
}

async fn library_table(library: &dyn SchemaProvider, name: &str) -> Result<Arc<dyn TableProvider>> {
    library
        .table(name)
        .await?
        .ok_or_else(|| DataFusionError::Internal(format!("pg_catalog.{name} missing")))
}

/// (oid, name) of every row of the library's `table`.
async fn library_rows(
    state: &dyn Session,
    library: &dyn SchemaProvider,
    table: &str,
    columns: [&str; 2],
) -> Result<Vec<(u32, String)>> {
    let provider = library_table(library, table).await?;
    Ok(read_all(state, provider.as_ref())
        .await?
        .iter()
        .flat_map(|batch| rows(batch, &columns))
        .filter_map(|row| Some((row[0].as_oid()?, row[1].as_text()?)))
        .collect())
}

/// `table` of `pg_catalog` with its counted OIDs made stable, or `table`
/// itself when none of its columns names an object.
pub(crate) fn with_stable_oids(
    name: &str,
    table: Arc<dyn TableProvider>,
    library: Arc<dyn SchemaProvider>,
    system: Arc<HashMap<String, u32>>,
) -> Arc<dyn TableProvider> {
    if !has_object_columns(name, &table.schema()) {
        return table;
    }
    Arc::new(StableOidTable {
        name: name.to_owned(),
        inner: table,
        library,
        system,
    })
}

/// A `pg_catalog` table whose counted OIDs are replaced by stable ones.
#[derive(Debug)]
struct StableOidTable {
    name: String,
    inner: Arc<dyn TableProvider>,
    library: Arc<dyn SchemaProvider>,
    system: Arc<HashMap<String, u32>>,
}

#[async_trait]
impl TableProvider for StableOidTable {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }

    fn table_type(&self) -> TableType {
        self.inner.table_type()
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let batches = read_all(state, self.inner.as_ref()).await?;
        let counted = batches.iter().any(|batch| {
            batch
                .schema()
                .fields()
                .iter()
                .zip(batch.columns())
                .any(|(field, column)| {
                    names_an_object(&self.name, field.name(), field.metadata())
                        && holds_counted_oid(column)
                })
        });
        let batches = if counted {
            let oids = StableOids::read(state, self.library.as_ref(), &self.system).await?;
            batches
                .into_iter()
                .map(|batch| oids.apply(&self.name, batch))
                .collect::<Result<Vec<_>>>()?
        } else {
            batches
        };
        MemorySourceConfig::try_new_exec(&[batches], self.schema(), projection.cloned())
            .map(|exec| exec as Arc<dyn ExecutionPlan>)
    }
}

/// Whether `column` (an int32 OID column) holds an OID the library counted:
/// the OIDs of system objects, which most catalog rows hold, need no map.
fn holds_counted_oid(column: &ArrayRef) -> bool {
    column.data_type() == &DataType::Int32
        && column
            .as_primitive::<Int32Type>()
            .iter()
            .flatten()
            .any(|v| v >= FIRST_COUNTED_OID as i32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_oids_depend_on_the_name_only_and_avoid_other_ranges() {
        let a = stable_oid("relation", "public.docs");
        assert_eq!(a, stable_oid("relation", "public.docs"));
        assert_ne!(a, stable_oid("relation", "public.doc"));
        assert_ne!(a, stable_oid("schema", "public.docs"));
        for oid in [
            a,
            stable_oid("database", "sluice"),
            stable_oid("schema", "public"),
        ] {
            assert!(
                (STABLE_OID_BASE..(1 << 30) - (1 << 24)).contains(&oid),
                "{oid}"
            );
        }
    }

    #[test]
    fn counted_oids_map_to_stable_ones_whatever_the_counting_order() {
        let first = StableOids::assign(
            BTreeMap::from([
                (("relation", "public.a".to_owned()), 16384),
                (("relation", "public.b".to_owned()), 16385),
                (("schema", "pg_catalog".to_owned()), 11),
                (("relation", "pg_catalog.pg_proc".to_owned()), 16400),
            ]),
            &HashMap::from([("pg_proc".to_owned(), 1255)]),
        );
        let second = StableOids::assign(
            BTreeMap::from([
                (("relation", "public.a".to_owned()), 16455),
                (("relation", "public.b".to_owned()), 16390),
            ]),
            &HashMap::new(),
        );
        assert_eq!(first.replace(16384), second.replace(16455));
        assert_eq!(first.replace(16385), second.replace(16390));
        assert_ne!(first.replace(16384), first.replace(16385));
        // A catalog table takes Postgres' OID.
        assert_eq!(first.replace(16400), 1255);
        // System OIDs and unknown values pass through.
        assert_eq!(first.replace(11), 11);
        assert_eq!(first.replace(-1), -1);
    }

    #[test]
    fn only_columns_naming_objects_are_rewritten() {
        use datafusion::arrow::array::StringArray;
        use datafusion::arrow::datatypes::{Field, Schema};
        use datafusion_pg_catalog::pg_catalog::oid_field::oid_field;

        let oids = StableOids::assign(
            BTreeMap::from([
                (("relation", "public.t".to_owned()), 16384),
                (("schema", "public".to_owned()), 16385),
            ]),
            &HashMap::new(),
        );
        let schema = Arc::new(Schema::new(vec![
            Field::new("oid", DataType::Int32, false),
            Field::new("relname", DataType::Utf8, false),
            oid_field("relnamespace", kind::REGNAMESPACE, false),
            oid_field("reltype", kind::REGTYPE, false),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int32Array::from(vec![16384, 1259])),
                Arc::new(StringArray::from(vec!["t", "pg_class"])),
                Arc::new(Int32Array::from(vec![16385, 11])),
                Arc::new(Int32Array::from(vec![16384, 0])),
            ],
        )
        .unwrap();
        let out = oids.apply("pg_class", batch.clone()).unwrap();
        let ints =
            |i: usize| -> Vec<i32> { out.column(i).as_primitive::<Int32Type>().values().to_vec() };
        assert_eq!(ints(0), [oids.replace(16384), 1259]);
        assert_eq!(ints(2), [oids.replace(16385), 11]);
        // A type OID that happens to equal a counted one is not a relation.
        assert_eq!(ints(3), [16384, 0]);
        // In another table, a column named oid is that table's own.
        let other = oids.apply("pg_type", batch).unwrap();
        assert_eq!(other.column(0).as_primitive::<Int32Type>().value(0), 16384);
    }
}
