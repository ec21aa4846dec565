//! [`RedbBackend`]: one redb file, one table of bytes to bytes, durable on every commit.
//!
//! Group commit: every write (batch or txn) is sent to one writer thread. The writer takes
//! every request waiting in its channel, applies them in arrival order inside ONE redb write
//! transaction (a txn's compares see the effects of the requests before it in the group),
//! commits (one fsync), publishes the group's watch events, then answers each request. An
//! fsync costs about as much for 1 write as for 100, so concurrent writers share it.
//!
//! Failure isolation: if applying one request fails, the transaction is dropped, that request
//! alone gets the error and the rest of the group is applied again without it. If opening
//! the transaction or the commit fails, every request of the group gets the error.
//!
//! Reads open their own read transaction on a blocking-pool thread.

use crate::backend::{effective_limit, scan_start, validate_ops, validate_txn};
use crate::watch::{WatchEvent, WatchHub};
use crate::{KeyValue, KvBackend, Result, StoreError, Txn, TxnResponse, WatchStream, WriteOp};
use async_trait::async_trait;
use parking_lot::{Mutex, RwLock};
use redb::{Database, ReadOnlyTable, ReadableDatabase, ReadableTable, Table, TableDefinition};
use std::ops::Bound;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use tokio::sync::oneshot;

/// The single table holding every key.
const TABLE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("kv");

/// The most requests applied in one write transaction, bounding its size and latency.
const MAX_GROUP_REQUESTS: usize = 1024;

/// A durable [`KvBackend`] in one redb file.
pub struct RedbBackend {
    /// `None` once closed.
    db: RwLock<Option<Arc<Database>>>,
    /// `None` once closed; dropping it lets the writer drain and stop.
    requests: RwLock<Option<mpsc::Sender<Request>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    hub: Arc<WatchHub>,
    /// Write transactions committed (each one fsync), shared by every request of a group.
    commits: Arc<AtomicU64>,
}

/// One write waiting for the writer thread; a batch is a txn without compares.
struct Request {
    txn: Txn,
    reply: oneshot::Sender<Result<bool>>,
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                match redb::Error::from(e) {
                    redb::Error::Io(e) => StoreError::from(e),
                    redb::Error::Corrupted(m) => StoreError::Corrupt(m),
                    redb::Error::DatabaseClosed => StoreError::Closed,
                    other => StoreError::Backend(other.to_string()),
                }
            }
        }
    )*};
}
from_redb!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

impl RedbBackend {
    /// Opens the database file at `path`, creating it if absent, and starts the writer.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let db = Arc::new(Database::create(path.as_ref())?);
        let wtx = db.begin_write()?;
        wtx.open_table(TABLE)?;
        wtx.commit()?;

        let hub = Arc::new(WatchHub::new());
        let commits = Arc::new(AtomicU64::new(0));
        let (tx, rx) = mpsc::channel();
        let writer = {
            let (db, hub, commits) = (db.clone(), hub.clone(), commits.clone());
            std::thread::Builder::new()
                .name("meridian-store-writer".into())
                .spawn(move || run_writer(&db, &rx, &hub, &commits))?
        };
        tracing::info!(path = %path.as_ref().display(), "opened redb store");
        Ok(Self {
            db: RwLock::new(Some(db)),
            requests: RwLock::new(Some(tx)),
            writer: Mutex::new(Some(writer)),
            hub,
            commits,
        })
    }

    /// How many write transactions were committed so far (each one fsync). Concurrent
    /// writes share commits, so this grows slower than the number of writes under load.
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// Sends one write to the writer thread and waits for its commit.
    async fn submit(&self, txn: Txn) -> Result<bool> {
        let (reply, answer) = oneshot::channel();
        self.requests
            .read()
            .as_ref()
            .ok_or(StoreError::Closed)?
            .send(Request { txn, reply })
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// Runs `f` on a read transaction's table, on the blocking pool.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(ReadOnlyTable<&'static [u8], &'static [u8]>) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let db = self.db.read().clone().ok_or(StoreError::Closed)?;
        tokio::task::spawn_blocking(move || f(db.begin_read()?.open_table(TABLE)?))
            .await
            .map_err(|e| StoreError::Backend(format!("read task failed: {e}")))?
    }

    /// Stops the writer after it commits what was already submitted, ends watch streams and
    /// releases the file. Blocks the calling thread until the writer has committed what was
    /// queued (typically one group commit).
    fn shutdown(&self) {
        self.requests.write().take();
        if let Some(writer) = self.writer.lock().take() {
            if writer.join().is_err() {
                tracing::error!("redb writer thread panicked");
            }
        }
        self.hub.close();
        self.db.write().take();
    }
}

impl Drop for RedbBackend {
    fn drop(&mut self) {
        self.shutdown();
    }
}

#[async_trait]
impl KvBackend for RedbBackend {
    fn name(&self) -> &'static str {
        "redb"
    }

    async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let key = key.to_vec();
        self.read(move |table| Ok(table.get(key.as_slice())?.map(|v| v.value().to_vec())))
            .await
    }

    async fn range_after(
        &self,
        prefix: &[u8],
        start_after: &[u8],
        limit: usize,
    ) -> Result<Vec<KeyValue>> {
        let (prefix, start_after) = (prefix.to_vec(), start_after.to_vec());
        self.read(move |table| {
            let bounds = (scan_start(&prefix, &start_after), Bound::Unbounded);
            let mut out = Vec::new();
            for entry in table.range::<&[u8]>(bounds)? {
                let (k, v) = entry?;
                if !k.value().starts_with(&prefix) || out.len() >= effective_limit(limit) {
                    break;
                }
                out.push(KeyValue {
                    key: k.value().to_vec(),
                    value: v.value().to_vec(),
                });
            }
            Ok(out)
        })
        .await
    }

    async fn batch(&self, ops: Vec<WriteOp>) -> Result<()> {
        validate_ops(&ops)?;
        self.submit(Txn {
            success: ops,
            ..Txn::default()
        })
        .await?;
        Ok(())
    }

    async fn txn(&self, txn: Txn) -> Result<TxnResponse> {
        validate_txn(&txn)?;
        let succeeded = self.submit(txn).await?;
        Ok(TxnResponse { succeeded })
    }

    async fn watch(&self, prefix: &[u8]) -> Result<WatchStream> {
        self.hub.subscribe(prefix)
    }

    async fn close(&self) -> Result<()> {
        // The join waits for at most one group commit; tell a multi-threaded runtime so it
        // moves other tasks off this worker meanwhile.
        match tokio::runtime::Handle::current().runtime_flavor() {
            tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(|| self.shutdown())
            }
            _ => self.shutdown(),
        }
        Ok(())
    }
}

/// The writer thread: one write transaction and one commit per group of waiting requests.
fn run_writer(db: &Database, rx: &mpsc::Receiver<Request>, hub: &WatchHub, commits: &AtomicU64) {
    while let Ok(first) = rx.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP_REQUESTS {
            match rx.try_recv() {
                Ok(request) => group.push(request),
                Err(_) => break,
            }
        }
        commit_group(db, group, hub, commits);
    }
}

/// Why an attempt to commit a group failed.
enum GroupFailure {
    /// Request `index` failed on its own; retry the others.
    Request(usize, StoreError),
    /// The transaction itself failed; everyone gets the error.
    Commit(StoreError),
}

fn commit_group(db: &Database, group: Vec<Request>, hub: &WatchHub, commits: &AtomicU64) {
    let mut own_errors: Vec<Option<StoreError>> = vec![None; group.len()];
    let outcome = loop {
        match try_commit(db, &group, &own_errors) {
            Err(GroupFailure::Request(i, e)) => own_errors[i] = Some(e),
            Err(GroupFailure::Commit(e)) => break Err(e),
            Ok((succeeded, events)) => {
                commits.fetch_add(1, Ordering::Relaxed);
                hub.publish(events);
                break Ok(succeeded);
            }
        }
    };
    for (i, (request, own_error)) in group.into_iter().zip(own_errors).enumerate() {
        let answer = match (own_error, &outcome) {
            (Some(e), _) => Err(e),
            (None, Err(e)) => Err(e.clone()),
            (None, Ok(succeeded)) => Ok(succeeded[i]),
        };
        // The caller may have given up waiting; nothing to do then.
        let _ = request.reply.send(answer);
    }
}

/// Applies every request not already failed in one write transaction and commits it.
/// Returns each request's txn outcome and the events of the commit, in order.
fn try_commit(
    db: &Database,
    group: &[Request],
    own_errors: &[Option<StoreError>],
) -> std::result::Result<(Vec<bool>, Vec<WatchEvent>), GroupFailure> {
    let commit_failed = |e: StoreError| GroupFailure::Commit(e);
    let wtx = db.begin_write().map_err(|e| commit_failed(e.into()))?;
    let mut succeeded = vec![false; group.len()];
    let mut events = Vec::new();
    {
        let mut table = wtx.open_table(TABLE).map_err(|e| commit_failed(e.into()))?;
        for (i, request) in group.iter().enumerate() {
            if own_errors[i].is_none() {
                succeeded[i] = apply(&mut table, &request.txn, &mut events)
                    .map_err(|e| GroupFailure::Request(i, e))?;
            }
        }
    }
    // Dropping `wtx` on an error path above aborts it.
    wtx.commit().map_err(|e| commit_failed(e.into()))?;
    Ok((succeeded, events))
}

/// Evaluates one txn against the table (including earlier writes of the same group) and
/// applies the chosen branch, recording its events.
fn apply(
    table: &mut Table<&'static [u8], &'static [u8]>,
    txn: &Txn,
    events: &mut Vec<WatchEvent>,
) -> Result<bool> {
    let mut ok = true;
    for compare in &txn.compares {
        let holds = if compare.prefix {
            let mut after = table.range::<&[u8]>(compare.key.as_slice()..)?;
            match after.next() {
                Some(entry) => compare.prefix_holds(Some(entry?.0.value())),
                None => true,
            }
        } else {
            let current = table.get(compare.key.as_slice())?;
            compare.holds(current.as_ref().map(|v| v.value()))
        };
        if !holds {
            ok = false;
            break;
        }
    }
    for op in if ok { &txn.success } else { &txn.failure } {
        match op {
            WriteOp::Put { key, value } => {
                table.insert(key.as_slice(), value.as_slice())?;
                events.push(WatchEvent::Put {
                    key: key.clone(),
                    value: value.clone(),
                });
            }
            WriteOp::Delete { key } => {
                if table.remove(key.as_slice())?.is_some() {
                    events.push(WatchEvent::Delete { key: key.clone() });
                }
            }
        }
    }
    Ok(ok)
}
