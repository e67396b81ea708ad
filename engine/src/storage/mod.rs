//! Durable tables: Parquet files plus a versioned manifest per table, on
//! `object_store` (the local data directory by default).
//!
//! # Why not an existing table format
//! delta-rs (`deltalake-core` 1.1) is the one transactional format that
//! builds against DataFusion 55 (iceberg-datafusion targets DataFusion 53,
//! lance 54). Delta's type system, though, has no fixed-size list and no
//! fixed-size binary: `VECTOR(n)` would be stored as `array<float>` and
//! `UUID` as `binary`, and every read would have to rebuild the Arrow types
//! and extension metadata Sluice's types live in. Parquet files written by
//! arrow keep the exact Arrow schema, field metadata included, so Sluice
//! writes those and keeps the table's state in its own manifest.
//!
//! # Layout
//! ```text
//! <data dir>/tables/<schema>/<table>/_manifest/<version>.json   committed states
//! <data dir>/tables/<schema>/<table>/data/<uuid>.parquet        data files
//! <data dir>/catalog/definitions/<seq>-<name>.json              views, external tables
//! <data dir>/transactions/<commit id>.json                      a multi-table commit under way
//! ```
//! A write puts its data file first, then commits the next manifest version
//! with a create-if-absent put: the manifest names every live file, so a
//! crash before the commit leaves only an unreferenced file, and two writers
//! racing for one version cannot both win. The newest manifest is the table.
//!
//! Views and external tables are definitions, not data: their creating
//! statement is stored and replayed in creation order at open.
//!
//! # Reads
//! Scans read the files of the newest version through DataFusion's Parquet
//! source, registered on the data directory's store: nothing is loaded at
//! open, projections and row-group pruning apply, memory stays bounded. A
//! scan holds the snapshot of files it started on, so compaction or DELETE
//! delete replaced files only when the last scan of them ends.
//!
//! # Transactions
//! Inside `BEGIN … COMMIT` writes put their files but commit nothing; the
//! [`Transaction`] keeps each changed table's file list and commits them
//! all at COMMIT, published as one tick of the commit clock
//! ([`versions`]), so readers see all of it or none; its reads see one
//! snapshot of every table (snapshot isolation).

mod change_feed;
mod commit;
mod compaction;
mod decoded_cache;
mod decoded_columns;
mod definitions;
mod durable_table;
mod files;
pub mod key_lookup;
mod location;
mod manifest;
mod row_change;
mod scan_statistics;
mod sink;
mod synced_local;
mod table;
mod table_files;
mod table_indexes;
mod table_lookups;
mod table_state;
mod transaction;
mod unreadable;
mod vector_bytes;
pub mod vector_index;
mod versions;

pub use change_feed::{ChangeKind, DeltaKind, RowDelta, TableDelta, TableSubscription};
pub use durable_table::DurableTable;
pub use files::DATA_STORE_URL;
pub use location::{DataLocation, register_store_for};
pub use manifest::{Created, create_once, delete_if_present, read_object, storage_error};
pub use sink::DurableSink;
pub use table::TableStore;
pub use table_indexes::duplicate_relation;
pub use transaction::{SessionTransaction, Transaction};
pub use unreadable::UnreadableTable;
