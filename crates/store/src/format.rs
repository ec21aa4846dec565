//! The stored layout's format version, and the migrations that bring an older store to it.
//!
//! [`keys::format`] holds the version, in decimal. [`ensure_current`] runs at start, before
//! anything else reads the store:
//! - no version and no metadata: a new store, stamped [`STORE_FORMAT`];
//! - no version but metadata: a store written before versions were stamped, format 1;
//! - an older version: every migration after it runs, in order, each raising the version
//!   once it has written everything;
//! - a newer version: refused with [`StoreError::NewerFormat`], so an older binary never
//!   misreads a layout it does not know.
//!
//! A migration reads and writes in pages (etcd takes at most 128 writes per transaction),
//! so it is not atomic. It is written to be run again: a crash in the middle leaves the old
//! version, and the next start runs the migration again from the beginning. Migrations read
//! records through the small views below, never through today's model types, so that a
//! later change of a model type cannot break the upgrade of an old store.
//!
//! | format | what it changed | migration from the one before |
//! |--------|-----------------|-------------------------------|
//! | 1 | the first stamped format | none |
//! | 2 | every shard and table record has its revision key (`revisions/...`), so a start no longer scans them all | writes each missing or disagreeing revision key |

use crate::{keys, KvBackend, Result, StoreError, WriteOp};
use meridian_model::ClusterId;
use serde::Deserialize;

/// The stored layout this binary reads and writes.
pub const STORE_FORMAT: u64 = 2;

/// Reads of one page while migrating.
const PAGE: usize = 1000;

/// What [`ensure_current`] found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormatCheck {
    /// The version the store had; `None` for a new, empty store.
    pub found: Option<u64>,
    /// The migrations that ran, oldest first.
    pub migrations: Vec<MigrationRun>,
}

/// One migration that ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationRun {
    /// The version it brought the store to.
    pub to: u64,
    /// What it changed, for the log.
    pub what: &'static str,
    /// How many keys it wrote.
    pub writes: usize,
}

/// What the migration to `to` changes (the table in the module docs, for the log).
fn describe(to: u64) -> &'static str {
    match to {
        2 => "revision keys for every shard and table",
        _ => "unknown",
    }
}

/// The store's format version: `None` when it holds no metadata at all.
pub async fn read(store: &dyn KvBackend) -> Result<Option<u64>> {
    match store.get(&keys::format()).await? {
        Some(raw) => std::str::from_utf8(&raw)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .map(Some)
            .ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "the store format version {:?} is not a number",
                    String::from_utf8_lossy(&raw)
                ))
            }),
        None => {
            let election = keys::election();
            let any = store.range(keys::ROOT.as_bytes(), 2).await?;
            Ok(any.iter().any(|kv| kv.key != election).then_some(1))
        }
    }
}

/// Brings the store to [`STORE_FORMAT`], or refuses a newer one. See the module docs.
pub async fn ensure_current(store: &dyn KvBackend) -> Result<FormatCheck> {
    let found = read(store).await?;
    let mut check = FormatCheck {
        found,
        migrations: Vec::new(),
    };
    let Some(mut version) = found else {
        store.batch(vec![stamp(STORE_FORMAT)]).await?;
        return Ok(check);
    };
    if version > STORE_FORMAT {
        return Err(StoreError::NewerFormat {
            found: version,
            supported: STORE_FORMAT,
        });
    }
    while version < STORE_FORMAT {
        let to = version + 1;
        let writes = migrate_to(store, to).await?;
        store.batch(vec![stamp(to)]).await?;
        check.migrations.push(MigrationRun {
            to,
            what: describe(to),
            writes,
        });
        version = to;
    }
    Ok(check)
}

fn stamp(version: u64) -> WriteOp {
    WriteOp::put(keys::format(), version.to_string().into_bytes())
}

/// Runs the migration that brings a store at `to - 1` to `to`; the keys written.
async fn migrate_to(store: &dyn KvBackend, to: u64) -> Result<usize> {
    match to {
        2 => v2_revision_keys(store).await,
        _ => Err(StoreError::Corrupt(format!("no migration to format {to}"))),
    }
}

/// Every cluster id named under `cluster_names/`.
async fn cluster_ids(store: &dyn KvBackend) -> Result<Vec<ClusterId>> {
    let mut ids = Vec::new();
    for kv in store.range(&keys::cluster_names_prefix(), 0).await? {
        let id = keys::decode_id(&kv.value)?;
        let id = u32::try_from(id)
            .map_err(|_| StoreError::Corrupt(format!("cluster id {id} out of range")))?;
        ids.push(ClusterId(id));
    }
    Ok(ids)
}

/// The part of a `Shard` record format 2 needs.
#[derive(Deserialize)]
struct ShardVersionView {
    version: u64,
}

/// The part of a `Table` record format 2 needs (0 in records written before revisions).
#[derive(Deserialize)]
struct TableRevisionView {
    #[serde(default)]
    revision: u64,
}

/// Format 2: each shard record's version and each table record's revision is also in its
/// revision key, which the compare-and-swaps on shards and tables compare. Format-1 stores
/// could hold records without one (written before revision keys existed).
async fn v2_revision_keys(store: &dyn KvBackend) -> Result<usize> {
    let mut writes = 0;
    for cluster in cluster_ids(store).await? {
        writes += backfill(store, &keys::shards_prefix(cluster), |key, value| {
            let id = keys::parse_shard(cluster, key)?;
            let view: ShardVersionView = serde_json::from_slice(value).ok()?;
            Some((keys::shard_version(cluster, id), view.version))
        })
        .await?;
        writes += backfill(store, &keys::tables_prefix(cluster), |key, value| {
            let id = keys::parse_table(cluster, key)?;
            let view: TableRevisionView = serde_json::from_slice(value).ok()?;
            Some((keys::table_revision(cluster, id), view.revision))
        })
        .await?;
    }
    Ok(writes)
}

/// Pages through the records under `prefix`; for each, `revision_of` names its revision
/// key and value, written when the stored key is missing or disagrees. A record it cannot
/// read is corrupt: the upgrade stops rather than leave a record unguarded.
async fn backfill(
    store: &dyn KvBackend,
    prefix: &[u8],
    revision_of: impl Fn(&[u8], &[u8]) -> Option<(Vec<u8>, u64)>,
) -> Result<usize> {
    let mut writes = 0;
    let mut after = Vec::new();
    loop {
        let page = store.range_after(prefix, &after, PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.key.clone();
        let mut ops = Vec::new();
        for kv in &page {
            let (key, revision) = revision_of(&kv.key, &kv.value).ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "migrating to format 2: unreadable record {}",
                    String::from_utf8_lossy(&kv.key)
                ))
            })?;
            let want = keys::encode_id(revision);
            if store.get(&key).await?.as_deref() != Some(want.as_slice()) {
                ops.push(WriteOp::put(key, want));
            }
        }
        writes += ops.len();
        for chunk in ops.chunks(store.max_batch_ops().clamp(1, PAGE)) {
            store.batch(chunk.to_vec()).await?;
        }
        if page.len() < PAGE {
            break;
        }
    }
    Ok(writes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryBackend;
    use meridian_model::{ShardId, TableId};

    const C: ClusterId = ClusterId(1);

    /// A format-1 store with two shards and two tables; shard 2 and table 7 lack their
    /// revision keys, and shard 1's disagrees with its record.
    async fn format1_store() -> MemoryBackend {
        let store = MemoryBackend::new();
        store
            .batch(vec![
                stamp(1),
                WriteOp::put(keys::cluster_name("default"), b"1".to_vec()),
                WriteOp::put(
                    keys::shard(C, ShardId(1)),
                    br#"{"id":1,"version":4}"#.to_vec(),
                ),
                WriteOp::put(keys::shard_version(C, ShardId(1)), b"3".to_vec()),
                WriteOp::put(
                    keys::shard(C, ShardId(2)),
                    br#"{"id":2,"version":9}"#.to_vec(),
                ),
                WriteOp::put(
                    keys::table(C, TableId(6)),
                    br#"{"id":6,"revision":2}"#.to_vec(),
                ),
                WriteOp::put(keys::table_revision(C, TableId(6)), b"2".to_vec()),
                WriteOp::put(keys::table(C, TableId(7)), br#"{"id":7}"#.to_vec()),
            ])
            .await
            .unwrap();
        store
    }

    #[tokio::test]
    async fn a_new_store_is_stamped_and_migrates_nothing() {
        let store = MemoryBackend::new();
        let check = ensure_current(&store).await.unwrap();
        assert_eq!(check.found, None);
        assert!(check.migrations.is_empty());
        assert_eq!(read(&store).await.unwrap(), Some(STORE_FORMAT));
    }

    #[tokio::test]
    async fn format_1_gets_every_revision_key_then_format_2() {
        let store = format1_store().await;
        let check = ensure_current(&store).await.unwrap();
        assert_eq!(check.found, Some(1));
        assert_eq!(
            check.migrations,
            vec![MigrationRun {
                to: 2,
                what: describe(2),
                writes: 3
            }]
        );
        let value = |k: Vec<u8>| {
            let store = &store;
            async move { store.get(&k).await.unwrap() }
        };
        assert_eq!(
            value(keys::shard_version(C, ShardId(1))).await,
            Some(b"4".to_vec())
        );
        assert_eq!(
            value(keys::shard_version(C, ShardId(2))).await,
            Some(b"9".to_vec())
        );
        assert_eq!(
            value(keys::table_revision(C, TableId(7))).await,
            Some(b"0".to_vec())
        );
        assert_eq!(read(&store).await.unwrap(), Some(2));
        // Run again: nothing to do.
        let again = ensure_current(&store).await.unwrap();
        assert_eq!(again.found, Some(2));
        assert!(again.migrations.is_empty());
    }

    #[tokio::test]
    async fn an_unstamped_store_with_metadata_is_format_1() {
        let store = format1_store().await;
        store
            .batch(vec![WriteOp::delete(keys::format())])
            .await
            .unwrap();
        assert_eq!(read(&store).await.unwrap(), Some(1));
        let check = ensure_current(&store).await.unwrap();
        assert_eq!(check.migrations.len(), 1);
        assert_eq!(read(&store).await.unwrap(), Some(STORE_FORMAT));
    }

    #[tokio::test]
    async fn an_interrupted_migration_runs_again_from_the_start() {
        // A crash after the migration's writes but before the version was raised.
        let store = format1_store().await;
        v2_revision_keys(&store).await.unwrap();
        assert_eq!(read(&store).await.unwrap(), Some(1));
        let check = ensure_current(&store).await.unwrap();
        assert_eq!(check.migrations[0].writes, 0, "idempotent");
        assert_eq!(read(&store).await.unwrap(), Some(2));
    }

    #[tokio::test]
    async fn an_unreadable_record_stops_the_upgrade_at_the_old_version() {
        let store = format1_store().await;
        store
            .batch(vec![WriteOp::put(
                keys::shard(C, ShardId(3)),
                b"{".to_vec(),
            )])
            .await
            .unwrap();
        let err = ensure_current(&store).await.unwrap_err();
        assert!(err.to_string().contains("unreadable record"), "{err}");
        assert_eq!(read(&store).await.unwrap(), Some(1));
    }

    #[tokio::test]
    async fn a_newer_or_unreadable_version_is_refused() {
        let store = MemoryBackend::new();
        store.batch(vec![stamp(STORE_FORMAT + 1)]).await.unwrap();
        let err = ensure_current(&store).await.unwrap_err();
        assert!(
            err.to_string()
                .contains(&format!("format {}, newer than", STORE_FORMAT + 1)),
            "{err}"
        );
        store
            .batch(vec![WriteOp::put(keys::format(), b"two".to_vec())])
            .await
            .unwrap();
        let err = ensure_current(&store).await.unwrap_err();
        assert!(err.to_string().contains("not a number"), "{err}");
    }
}
