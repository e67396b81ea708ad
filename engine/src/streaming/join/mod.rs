//! Joins in continuous queries: [`JoinOperator`] keeps both inputs' rows
//! and joins each change of one input with the other's kept rows, so the
//! output always equals the join of the inputs' current contents (a join
//! with a Sluice table follows the table's updates and deletes). When the
//! join bounds the inputs' event times against each other
//! ([`TimeBounds`], an interval join) rows that can no longer match are
//! dropped as the watermarks pass them. [`KeyedJoin`] runs a join with
//! equality keys as several copies, each owning the keys that hash to it.

mod bounds;
mod key_index;
mod keyed;
mod keys;
mod operator;
mod outer;
mod side;

pub use bounds::{TimeBounds, time_bounds};
pub use keyed::KeyedJoin;
pub use keys::join_keys;
pub use operator::{JoinKeys, JoinOperator};
