//! [`Guarded`]: a DataFusion function whose arguments an [`ArgumentGuard`]
//! looks at (and may adjust) before the function runs. Sluice keeps
//! DataFusion's implementations of `lpad`, `repeat`, `regexp_like` and the
//! like, and adds only the bounds Postgres has and they lack
//! ([`super::length_bound`], [`super::pattern_bound`]); this is the one
//! wrapper they share.

use std::fmt::Debug;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, FieldRef};
use datafusion::error::Result;
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
};

/// What a [`Guarded`] function checks before it runs.
pub trait ArgumentGuard: Debug + Send + Sync {
    /// Names the guard, for telling guarded functions apart.
    fn name(&self) -> &'static str;

    /// `args` for `function` as the function may take them, or the error
    /// that refuses them.
    fn guard(&self, function: &str, args: ScalarFunctionArgs) -> Result<ScalarFunctionArgs>;
}

/// DataFusion's `inner` with `guard` in front.
#[derive(Debug)]
pub struct Guarded {
    inner: ScalarUDF,
    guard: Arc<dyn ArgumentGuard>,
}

impl Guarded {
    /// `inner` guarded, as a function to register.
    pub fn udf(inner: &ScalarUDF, guard: Arc<dyn ArgumentGuard>) -> ScalarUDF {
        ScalarUDF::new_from_impl(Self {
            inner: inner.clone(),
            guard,
        })
    }
}

impl PartialEq for Guarded {
    fn eq(&self, other: &Self) -> bool {
        self.inner == other.inner && self.guard.name() == other.guard.name()
    }
}

impl Eq for Guarded {}

impl Hash for Guarded {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.inner.hash(state);
        self.guard.name().hash(state);
    }
}

impl ScalarUDFImpl for Guarded {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        self.inner.return_field_from_args(args)
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let args = self.guard.guard(self.name(), args)?;
        self.inner.invoke_with_args(args)
    }
}
