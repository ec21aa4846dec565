//! Meridian's storage layer: where every durable byte of metadata is read and written.
//!
//! - [`KvBackend`] is the one interface the rest of Meridian uses: point reads, prefix
//!   scans, atomic batches, compare-and-swap transactions and prefix watches.
//! - [`MemoryBackend`] keeps everything in a `BTreeMap` (tests, simulations).
//! - [`RedbBackend`] keeps everything in one redb file, with group commit on one writer
//!   thread so that concurrent writers share each fsync.
//! - [`EtcdBackend`] keeps everything in etcd, for highly available deployments;
//!   [`etcd::election`] elects one leader among several servers and fences its writes.
//! - [`keys`] is THE key layout; nothing outside it formats a key.
//! - [`format`] is the layout's version and the migrations from older ones.
//! - [`SequenceAllocator`] hands out never-reused ids persisted under a key.
//! - [`conformance`] is the test suite every backend must pass.
#![warn(missing_docs)]

pub mod backend;
pub mod conformance;
pub mod etcd;
pub mod format;
pub mod keys;
pub mod memory;
pub mod redb_backend;
pub mod sequence;
pub mod watch;

pub use backend::{Compare, KeyValue, KvBackend, Txn, TxnResponse, WriteOp};
pub use etcd::EtcdBackend;
pub use memory::MemoryBackend;
pub use redb_backend::RedbBackend;
pub use sequence::SequenceAllocator;
pub use watch::{WatchEvent, WatchStream};

use std::sync::Arc;

/// The longest accepted key, in bytes.
pub const MAX_KEY_LEN: usize = 8 * 1024;
/// The longest accepted value, in bytes (etcd's default request limit is 1.5 MiB).
pub const MAX_VALUE_LEN: usize = 1024 * 1024;

/// Everything that can go wrong in the store. Cloneable, so one failed group commit can
/// answer every request that shared it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The operating system refused an I/O operation.
    #[error("i/o error: {0}")]
    Io(Arc<std::io::Error>),
    /// The storage engine failed (the message is the engine's).
    #[error("storage backend error: {0}")]
    Backend(String),
    /// Stored bytes do not decode as what the key layout says they are.
    #[error("corrupt data: {0}")]
    Corrupt(String),
    /// The backend was closed; no further reads or writes are served.
    #[error("store is closed")]
    Closed,
    /// A key or value exceeds [`MAX_KEY_LEN`] or [`MAX_VALUE_LEN`].
    #[error("{what} is {len} bytes, more than the limit of {max}")]
    TooLarge {
        /// "key" or "value".
        what: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The store was written in a newer layout than this binary knows.
    #[error("the metadata store is in format {found}, newer than this binary's {supported}: run a meridian that reads format {found}")]
    NewerFormat {
        /// The store's format version.
        found: u64,
        /// The newest this binary reads.
        supported: u64,
    },
    /// A request is malformed (e.g. an empty key).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The store could not be reached or did not answer in time; the write may or may not
    /// have been applied.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A write was refused because its writer no longer holds leadership (its fence, the
    /// election key of its term, is gone). Nothing of the write was applied; the writer must
    /// step down.
    #[error("write fenced off: {0}")]
    Fenced(String),
}

impl From<std::io::Error> for StoreError {
    fn from(e: std::io::Error) -> Self {
        StoreError::Io(Arc::new(e))
    }
}

/// The store's result type.
pub type Result<T> = std::result::Result<T, StoreError>;
