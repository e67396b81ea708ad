//! The comment functions psql's `\dt+`, `\df+`, `\dT`, `\l+` and GUI
//! tools' object browsers call: `obj_description(oid, catalog)`,
//! `col_description(table_oid, column)` and `shobj_description(oid,
//! catalog)`, over the rows of `pg_description` and `pg_shdescription`
//! (Postgres' own descriptions of its built-in objects).
//!
//! A catalog is named as in `pg_class` (`'pg_proc'`); a name that is not a
//! system catalog's finds no comment (NULL), as in Postgres, whose versions
//! of these functions are SQL over `pg_class`.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, StringArray};
use datafusion::arrow::datatypes::DataType;
use datafusion::error::Result;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::prelude::SessionContext;
use datafusion_pg_catalog::pg_catalog::ArrowTable;

use crate::pg::catalog_rows::{Shared, argument_arrays, column_i32, rows};

/// Registers the three functions on `ctx`, over `pg_description`,
/// `pg_shdescription` and the system catalogs' OIDs by name (`system`).
pub(crate) fn install(
    ctx: &SessionContext,
    pg_description: &ArrowTable,
    pg_shdescription: &ArrowTable,
    system: Arc<HashMap<String, u32>>,
) {
    let texts = Arc::new(Descriptions::read(pg_description, pg_shdescription, system));
    for kind in [
        DescriptionKind::Object,
        DescriptionKind::Column,
        DescriptionKind::Shared,
    ] {
        ctx.register_udf(ScalarUDF::new_from_impl(Description {
            kind,
            texts: Shared(Arc::clone(&texts)),
            signature: Signature::variadic_any(Volatility::Stable),
        }));
    }
}

/// The descriptions, and the OIDs of the catalogs they are filed under.
#[derive(Debug, Default)]
struct Descriptions {
    /// (object OID, catalog OID, column number or 0) → text.
    objects: HashMap<(u32, u32, i32), String>,
    /// (object OID, catalog OID) → text, for shared objects (databases,
    /// roles, tablespaces).
    shared: HashMap<(u32, u32), String>,
    /// System catalog name → OID (`pg_class` → 1259).
    catalogs: Arc<HashMap<String, u32>>,
}

/// `pg_class`'s OID, under which relations' and columns' descriptions are.
const PG_CLASS_OID: u32 = 1259;

impl Descriptions {
    fn read(
        objects: &ArrowTable,
        shared: &ArrowTable,
        catalogs: Arc<HashMap<String, u32>>,
    ) -> Self {
        let mut texts = Self::default();
        for batch in objects.data() {
            for row in rows(batch, &["objoid", "classoid", "objsubid", "description"]) {
                if let (Some(object), Some(class), Some(text)) =
                    (row[0].as_oid(), row[1].as_oid(), row[3].as_text())
                {
                    let column = row[2].as_oid().and_then(|c| i32::try_from(c).ok());
                    texts
                        .objects
                        .insert((object, class, column.unwrap_or(0)), text);
                }
            }
        }
        for batch in shared.data() {
            for row in rows(batch, &["objoid", "classoid", "description"]) {
                if let (Some(object), Some(class), Some(text)) =
                    (row[0].as_oid(), row[1].as_oid(), row[2].as_text())
                {
                    texts.shared.insert((object, class), text);
                }
            }
        }
        texts.catalogs = catalogs;
        texts
    }

    /// The OID of the system catalog named `name`.
    fn catalog(&self, name: &str) -> Option<u32> {
        self.catalogs.get(name).copied()
    }
}

/// Which comment function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum DescriptionKind {
    /// `obj_description(oid [, catalog])`.
    Object,
    /// `col_description(table_oid, column_number)`.
    Column,
    /// `shobj_description(oid, catalog)`.
    Shared,
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Description {
    kind: DescriptionKind,
    texts: Shared<Descriptions>,
    signature: Signature,
}

impl ScalarUDFImpl for Description {
    fn name(&self) -> &str {
        match self.kind {
            DescriptionKind::Object => "obj_description",
            DescriptionKind::Column => "col_description",
            DescriptionKind::Shared => "shobj_description",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let arrays = argument_arrays(&args)?;
        let oids = arrays.first().map(column_i32).unwrap_or_default();
        let second = arrays.get(1);
        let catalogs = match (self.kind, second) {
            (DescriptionKind::Column, _) | (_, None) => None,
            (_, Some(names)) => Some(datafusion::arrow::compute::cast(names, &DataType::Utf8)?),
        };
        let catalogs = catalogs.as_ref().map(|c| c.as_string::<i32>());
        let columns = match self.kind {
            DescriptionKind::Column => second.map(column_i32),
            _ => None,
        };
        let mut texts = Vec::with_capacity(rows);
        for i in 0..rows {
            let Some(oid) = oids
                .get(i)
                .copied()
                .flatten()
                .and_then(|o| u32::try_from(o).ok())
            else {
                texts.push(None);
                continue;
            };
            let catalog = match catalogs {
                Some(names) => match names
                    .is_valid(i)
                    .then(|| self.texts.catalog(names.value(i)))
                {
                    Some(Some(class)) => Some(class),
                    _ => {
                        texts.push(None);
                        continue;
                    }
                },
                None => None,
            };
            texts.push(match self.kind {
                DescriptionKind::Object => match catalog {
                    Some(class) => self.texts.objects.get(&(oid, class, 0)).cloned(),
                    // The deprecated one-argument form: any catalog.
                    None => self
                        .texts
                        .objects
                        .iter()
                        .find(|((object, _, column), _)| *object == oid && *column == 0)
                        .map(|(_, text)| text.clone()),
                },
                DescriptionKind::Column => {
                    let column = columns
                        .as_ref()
                        .and_then(|c| c.get(i).copied().flatten())
                        .unwrap_or(0);
                    self.texts
                        .objects
                        .get(&(oid, PG_CLASS_OID, column))
                        .cloned()
                }
                DescriptionKind::Shared => {
                    catalog.and_then(|class| self.texts.shared.get(&(oid, class)).cloned())
                }
            });
        }
        let array: ArrayRef = Arc::new(StringArray::from(texts));
        Ok(ColumnarValue::Array(array))
    }
}
