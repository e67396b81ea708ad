//! A panic in a statement's work (parsing, planning, executing) costs that
//! statement, never the connection: pgwire serves a connection as one task,
//! so a panic unwinding out of a handler would drop the client without a
//! word. The guards here turn it into an `XX000` error for the statement,
//! logged with what the panic said; the connection goes on. (The row
//! stream has its own guard, in [`crate::encoding::cancellable`].)

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;

use futures::FutureExt;
use pgwire::error::{PgWireError, PgWireResult};

use crate::sqlstate::{codes, user_error};

/// Runs `work`, a panic in it becoming an error about `doing`.
pub fn guard_sync<T>(doing: &str, work: impl FnOnce() -> PgWireResult<T>) -> PgWireResult<T> {
    std::panic::catch_unwind(AssertUnwindSafe(work))
        .unwrap_or_else(|panic| Err(panic_error(doing, panic.as_ref())))
}

/// Awaits `work`, a panic in it becoming an error about `doing`.
pub async fn guard<T>(doing: &str, work: impl Future<Output = PgWireResult<T>>) -> PgWireResult<T> {
    AssertUnwindSafe(work)
        .catch_unwind()
        .await
        .unwrap_or_else(|panic| Err(panic_error(doing, panic.as_ref())))
}

fn panic_error(doing: &str, panic: &(dyn Any + Send)) -> PgWireError {
    let said = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("no message");
    log::error!("a panic while {doing}: {said}");
    user_error(
        codes::INTERNAL_ERROR,
        format!("internal error while {doing} (a panic: {said}); the connection is still usable"),
    )
}
