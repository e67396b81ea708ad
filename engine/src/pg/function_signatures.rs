//! A function's signature as Postgres writes it, for psql's `\df`:
//! `pg_get_function_arguments(oid)` (`base anyelement, from_json json,
//! use_json_as_text boolean DEFAULT false`),
//! `pg_get_function_identity_arguments(oid)` (the same without defaults,
//! what tells overloads apart) and
//! `pg_get_function_result(oid)` (`SETOF record`, `TABLE(word text, …)`);
//! and `pg_get_function_sqlbody(oid)`, which `\df+` shows (before
//! `prosrc`): NULL, since Sluice has no SQL functions of its own and the
//! built-in ones' bodies are kept only as expression trees.
//!
//! Postgres deparses these from `pg_proc`; the library ships `pg_proc` as
//! data without the functions, so they are written here, from the same
//! columns. Argument defaults are expression trees (`pg_node_tree`); the
//! constants most of them are (booleans, integers, text) are read back,
//! and any other default is shown as `DEFAULT …`, never as a wrong value.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Int32Array, StringArray};
use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::common::config::ConfigOptions;
use datafusion::error::Result;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::prelude::SessionContext;
use datafusion_pg_catalog::pg_catalog::ArrowTable;

use crate::pg::catalog_rows::{Shared, column_i32, rows};

/// Registers the three functions on `ctx`, over the rows of `pg_proc`,
/// with type names from `ctx`'s `format_type`.
pub(crate) fn install(ctx: &SessionContext, pg_proc: &ArrowTable) -> Result<()> {
    let procs = read_procs(pg_proc);
    let mut type_oids: Vec<u32> = procs
        .values()
        .flat_map(|p| p.arguments.iter().map(|a| a.type_oid).chain([p.result]))
        .collect();
    type_oids.sort_unstable();
    type_oids.dedup();
    let type_names = match ctx.state().scalar_functions().get("format_type") {
        Some(format_type) => format_types(format_type, &type_oids)?,
        None => HashMap::new(),
    };
    let signatures = Arc::new(
        procs
            .into_iter()
            .map(|(oid, proc)| (oid, proc.signature(&type_names)))
            .collect::<HashMap<_, _>>(),
    );
    for part in [
        SignaturePart::Arguments,
        SignaturePart::IdentityArguments,
        SignaturePart::Result,
        SignaturePart::SqlBody,
    ] {
        ctx.register_udf(ScalarUDF::new_from_impl(FunctionSignature {
            part,
            signatures: Shared(Arc::clone(&signatures)),
            signature: Signature::variadic_any(Volatility::Stable),
        }));
    }
    Ok(())
}

/// The three texts of one function.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Described {
    arguments: String,
    identity_arguments: String,
    /// NULL for a procedure, as in Postgres.
    result: Option<String>,
}

/// An argument as `pg_proc` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Argument {
    /// `i`, `o`, `b` (INOUT), `v` (VARIADIC) or `t` (a column of TABLE).
    mode: char,
    name: String,
    type_oid: u32,
    /// The default's text, for the last `pronargdefaults` input arguments.
    default: Option<String>,
}

/// A row of `pg_proc`, as far as its signature goes.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Proc {
    kind: String,
    returns_set: bool,
    result: u32,
    arguments: Vec<Argument>,
}

impl Proc {
    fn signature(&self, type_names: &HashMap<u32, String>) -> Described {
        let type_name = |oid: u32| {
            type_names
                .get(&oid)
                .cloned()
                .unwrap_or_else(|| oid.to_string())
        };
        let written = |argument: &Argument, with_default: bool| {
            let mode = match argument.mode {
                'o' => "OUT ",
                'b' => "INOUT ",
                'v' => "VARIADIC ",
                _ => "",
            };
            let mut text = mode.to_owned();
            if !argument.name.is_empty() {
                text.push_str(&argument.name);
                text.push(' ');
            }
            text.push_str(&type_name(argument.type_oid));
            if let (true, Some(default)) = (with_default, &argument.default) {
                text.push_str(" DEFAULT ");
                text.push_str(default);
            }
            text
        };
        let arguments = self
            .arguments
            .iter()
            .filter(|a| a.mode != 't')
            .map(|a| written(a, true))
            .collect::<Vec<_>>()
            .join(", ");
        let identity_arguments = self
            .arguments
            .iter()
            .filter(|a| a.mode != 't')
            .map(|a| written(a, false))
            .collect::<Vec<_>>()
            .join(", ");
        let table_columns: Vec<String> = self
            .arguments
            .iter()
            .filter(|a| a.mode == 't')
            .map(|a| format!("{} {}", a.name, type_name(a.type_oid)))
            .collect();
        let result = if self.kind == "p" {
            None
        } else if !table_columns.is_empty() {
            Some(format!("TABLE({})", table_columns.join(", ")))
        } else if self.returns_set {
            Some(format!("SETOF {}", type_name(self.result)))
        } else {
            Some(type_name(self.result))
        };
        Described {
            arguments,
            identity_arguments,
            result,
        }
    }
}

/// Every function of `pg_proc` by OID.
fn read_procs(pg_proc: &ArrowTable) -> HashMap<u32, Proc> {
    let columns = [
        "oid",
        "prokind",
        "proretset",
        "prorettype",
        "proargtypes",
        "proallargtypes",
        "proargmodes",
        "proargnames",
        "pronargdefaults",
        "proargdefaults",
    ];
    let mut procs = HashMap::new();
    for batch in pg_proc.data() {
        for row in rows(batch, &columns) {
            let Some(oid) = row[0].as_oid() else {
                continue;
            };
            let text = |i: usize| row[i].as_text().unwrap_or_default();
            let input_types = oids(&text(4));
            let all_types = oids(&text(5));
            let types = if all_types.is_empty() {
                input_types
            } else {
                all_types
            };
            let modes = list_items(&text(6));
            let names = list_items(&text(7));
            let mut arguments: Vec<Argument> = types
                .iter()
                .enumerate()
                .map(|(i, &type_oid)| Argument {
                    mode: modes.get(i).and_then(|m| m.chars().next()).unwrap_or('i'),
                    name: names.get(i).cloned().unwrap_or_default(),
                    type_oid,
                    default: None,
                })
                .collect();
            let defaults = default_texts(&text(9));
            let with_defaults = usize::try_from(row[8].as_oid().unwrap_or(0)).unwrap_or(0);
            let inputs: Vec<&mut Argument> = arguments
                .iter_mut()
                .filter(|a| matches!(a.mode, 'i' | 'b' | 'v'))
                .collect();
            let first = inputs.len().saturating_sub(with_defaults);
            for (argument, default) in inputs.into_iter().skip(first).zip(defaults) {
                argument.default = Some(default);
            }
            procs.insert(
                oid,
                Proc {
                    kind: text(1),
                    returns_set: row[2].as_bool().unwrap_or(false),
                    result: row[3].as_oid().unwrap_or(0),
                    arguments,
                },
            );
        }
    }
    procs
}

/// The OIDs of an `oidvector` (`23 23`) or of the library's list form
/// (`[25, 18]`).
fn oids(text: &str) -> Vec<u32> {
    text.split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect()
}

/// The items of the library's list form of a text array (`['o', 'o']`).
fn list_items(text: &str) -> Vec<String> {
    let inner = text.trim().trim_start_matches('[').trim_end_matches(']');
    if inner.trim().is_empty() {
        return Vec::new();
    }
    inner
        .split(',')
        .map(|item| item.trim().trim_matches('\'').to_owned())
        .collect()
}

/// The texts of the defaults in a `proargdefaults` list of expression
/// trees: constants of `boolean`, `smallint`, `integer`, `bigint` and
/// `text` as Postgres prints them, `…` for anything else.
fn default_texts(tree: &str) -> Vec<String> {
    let mut defaults = Vec::new();
    let mut depth = 0_usize;
    let mut start = None;
    for (at, c) in tree.char_indices() {
        match c {
            '{' => {
                if depth == 0 {
                    start = Some(at);
                }
                depth += 1;
            }
            '}' => {
                depth = depth.saturating_sub(1);
                if depth == 0
                    && let Some(from) = start.take()
                {
                    defaults.push(constant_text(&tree[from..=at]).unwrap_or_else(|| "…".into()));
                }
            }
            _ => {}
        }
    }
    defaults
}

/// The value of a `{CONST …}` node of a type this reads back.
fn constant_text(node: &str) -> Option<String> {
    let field = |name: &str| -> Option<&str> {
        let rest = node.split(&format!(":{name} ")).nth(1)?;
        rest.split_whitespace().next()
    };
    if !node.starts_with("{CONST ") {
        return None;
    }
    let type_oid: u32 = field("consttype")?.parse().ok()?;
    if field("constisnull")? == "true" {
        return Some("NULL".into());
    }
    // `:constvalue <length> [ b0 b1 … ]`: the datum's bytes, little-endian
    // for by-value types, a 4-byte header before a text's bytes.
    let bytes: Vec<u8> = node
        .split(":constvalue ")
        .nth(1)?
        .split('[')
        .nth(1)?
        .split(']')
        .next()?
        .split_whitespace()
        .map(|b| b.parse::<i16>().ok().map(|b| b as u8))
        .collect::<Option<_>>()?;
    let integer = |width: usize| -> Option<i64> {
        let mut le = [0_u8; 8];
        le[..width].copy_from_slice(bytes.get(..width)?);
        let value = i64::from_le_bytes(le);
        let shift = 64 - 8 * width as u32;
        Some((value << shift) >> shift)
    };
    match type_oid {
        16 => Some(
            if bytes.first()? == &0 {
                "false"
            } else {
                "true"
            }
            .into(),
        ),
        21 => integer(2).map(|v| v.to_string()),
        23 => integer(4).map(|v| v.to_string()),
        20 => integer(8).map(|v| v.to_string()),
        25 => {
            let text = String::from_utf8(bytes.get(4..)?.to_vec()).ok()?;
            Some(format!("'{}'::text", text.replace('\'', "''")))
        }
        _ => None,
    }
}

/// `format_type(oid, NULL)` of each of `oids`.
fn format_types(format_type: &ScalarUDF, oids: &[u32]) -> Result<HashMap<u32, String>> {
    let values: Int32Array = oids.iter().map(|&o| i32::try_from(o).ok()).collect();
    let typmods = Int32Array::from(vec![None; oids.len()]);
    let args = ScalarFunctionArgs {
        args: vec![
            ColumnarValue::Array(Arc::new(values)),
            ColumnarValue::Array(Arc::new(typmods)),
        ],
        arg_fields: vec![
            Arc::new(Field::new("oid", DataType::Int32, true)),
            Arc::new(Field::new("typmod", DataType::Int32, true)),
        ],
        number_rows: oids.len(),
        return_field: Arc::new(Field::new("format_type", DataType::Utf8, true)),
        config_options: Arc::new(ConfigOptions::default()),
    };
    let names = format_type.invoke_with_args(args)?.to_array(oids.len())?;
    let names = datafusion::arrow::compute::cast(&names, &DataType::Utf8)?;
    let names = datafusion::arrow::array::AsArray::as_string::<i32>(&names);
    Ok(oids
        .iter()
        .zip(names.iter())
        .filter_map(|(&oid, name)| Some((oid, name?.to_owned())))
        .collect())
}

/// Which text of a signature a function returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum SignaturePart {
    Arguments,
    IdentityArguments,
    Result,
    SqlBody,
}

/// `pg_get_function_arguments`, `…_identity_arguments` or `…_result`:
/// NULL for an OID that is not a function's, as in Postgres.
#[derive(Debug, PartialEq, Eq, Hash)]
struct FunctionSignature {
    part: SignaturePart,
    signatures: Shared<HashMap<u32, Described>>,
    signature: Signature,
}

impl ScalarUDFImpl for FunctionSignature {
    fn name(&self) -> &str {
        match self.part {
            SignaturePart::Arguments => "pg_get_function_arguments",
            SignaturePart::IdentityArguments => "pg_get_function_identity_arguments",
            SignaturePart::Result => "pg_get_function_result",
            SignaturePart::SqlBody => "pg_get_function_sqlbody",
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
        let oids = match args.args.first() {
            Some(oids) => column_i32(&oids.to_array(rows)?),
            None => vec![None; rows],
        };
        let texts: StringArray = oids
            .iter()
            .map(|oid| {
                let described = self.signatures.get(&u32::try_from((*oid)?).ok()?)?;
                match self.part {
                    SignaturePart::Arguments => Some(described.arguments.clone()),
                    SignaturePart::IdentityArguments => Some(described.identity_arguments.clone()),
                    SignaturePart::Result => described.result.clone(),
                    SignaturePart::SqlBody => None,
                }
            })
            .collect();
        let array: ArrayRef = Arc::new(texts);
        Ok(ColumnarValue::Array(array))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> HashMap<u32, String> {
        [
            (16, "boolean"),
            (18, "\"char\""),
            (25, "text"),
            (2249, "record"),
        ]
        .into_iter()
        .map(|(oid, name)| (oid, name.to_owned()))
        .collect()
    }

    #[test]
    fn out_arguments_and_sets_read_as_postgres_writes_them() {
        let keywords = Proc {
            kind: "f".into(),
            returns_set: true,
            result: 2249,
            arguments: [("word", 25), ("catcode", 18)]
                .map(|(name, type_oid)| Argument {
                    mode: 'o',
                    name: name.into(),
                    type_oid,
                    default: None,
                })
                .to_vec(),
        };
        let described = keywords.signature(&names());
        assert_eq!(described.arguments, "OUT word text, OUT catcode \"char\"");
        assert_eq!(described.identity_arguments, described.arguments);
        assert_eq!(described.result.as_deref(), Some("SETOF record"));
    }

    #[test]
    fn defaults_are_read_back_from_constant_trees() {
        let tree = "({CONST :consttype 16 :consttypmod -1 :constcollid 0 :constlen 1 \
                    :constbyval true :constisnull false :location -1 :constvalue 1 [ 0 0 0 0 0 0 0 0 ]} \
                    {CONST :consttype 23 :consttypmod -1 :constcollid 0 :constlen 4 :constbyval true \
                    :constisnull false :location -1 :constvalue 4 [ 255 255 255 255 0 0 0 0 ]} \
                    {CONST :consttype 25 :consttypmod -1 :constcollid 100 :constlen -1 :constbyval false \
                    :constisnull false :location -1 :constvalue 7 [ 28 0 0 0 78 70 67 ]} \
                    {FUNCEXPR :funcid 316 :args ({CONST :consttype 23})})";
        assert_eq!(default_texts(tree), ["false", "-1", "'NFC'::text", "…"]);
    }

    #[test]
    fn list_forms_parse() {
        assert_eq!(oids("23 23 1186"), [23, 23, 1186]);
        assert_eq!(oids("[25, 18]"), [25, 18]);
        assert_eq!(list_items("['o', 'b']"), ["o", "b"]);
        assert!(list_items("").is_empty());
    }
}
