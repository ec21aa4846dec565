//! Backups of the metadata, and the stored layout's format version.
//!
//! A backup is every key under `/meridian/v1/` read in one consistent snapshot (one redb
//! read transaction; one etcd revision across pages), less the HA election key, which
//! belongs to a live etcd lease. It is text, one JSON object per line: a header
//! `{"meridian_backup": 1, "format", "taken_at_ms", "keys"}`, then `{"k": key, "v": value}`
//! per key (values that are not UTF-8 as `{"k", "hex"}`). Restoring writes them into an
//! empty store; id sequences are keys like any other, so ids never go backwards.
//!
//! The header names the store's format version ([`meridian_store::format`]). A backup of an
//! older format restores as it was taken, and the next start migrates it; one of a newer
//! format is refused.

use crate::error::{Result, ServerError};
use meridian_store::format::{self, STORE_FORMAT};
use meridian_store::{keys, KvBackend, WriteOp};
use serde::{Deserialize, Serialize};

/// Version of the backup file format.
const BACKUP_VERSION: u64 = 1;

/// Brings the store to this binary's format (migrating an older one) or refuses a newer
/// one, logging each migration that ran.
pub async fn ensure_format(store: &dyn KvBackend) -> Result<()> {
    let check = format::ensure_current(store).await?;
    for run in &check.migrations {
        tracing::info!(
            to = run.to,
            writes = run.writes,
            "migrated the metadata store to format {}: {}",
            run.to,
            run.what
        );
    }
    Ok(())
}

#[derive(Serialize, Deserialize)]
struct Header {
    meridian_backup: u64,
    format: u64,
    taken_at_ms: u64,
    keys: usize,
}

#[derive(Serialize, Deserialize)]
struct Entry {
    k: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    v: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    hex: Option<String>,
}

/// A consistent snapshot of the metadata, as backup text.
pub async fn take(store: &dyn KvBackend) -> Result<String> {
    let election = keys::election();
    let kvs: Vec<_> = store
        .range(keys::ROOT.as_bytes(), 0)
        .await?
        .into_iter()
        .filter(|kv| kv.key != election)
        .collect();
    let header = Header {
        meridian_backup: BACKUP_VERSION,
        format: format::read(store).await?.unwrap_or(STORE_FORMAT),
        taken_at_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
        keys: kvs.len(),
    };
    let mut out = to_line(&header)?;
    out.push('\n');
    for kv in kvs {
        let k = String::from_utf8(kv.key)
            .map_err(|_| ServerError::Corrupt("a key that is not UTF-8".into()))?;
        let entry = match String::from_utf8(kv.value) {
            Ok(v) => Entry {
                k,
                v: Some(v),
                hex: None,
            },
            Err(e) => Entry {
                k,
                v: None,
                hex: Some(e.as_bytes().iter().map(|b| format!("{b:02x}")).collect()),
            },
        };
        out.push_str(&to_line(&entry)?);
        out.push('\n');
    }
    Ok(out)
}

fn to_line<T: Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| ServerError::Corrupt(format!("encoding a backup: {e}")))
}

/// Reads backup text: its pairs, checked against the header.
pub fn parse(text: &str) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let bad = |m: String| ServerError::InvalidArgument(format!("not a usable backup: {m}"));
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header: Header = serde_json::from_str(lines.next().ok_or_else(|| bad("empty".into()))?)
        .map_err(|e| bad(format!("header: {e}")))?;
    if header.meridian_backup != BACKUP_VERSION {
        return Err(bad(format!(
            "backup version {} (this binary reads {BACKUP_VERSION})",
            header.meridian_backup
        )));
    }
    if header.format > STORE_FORMAT {
        return Err(bad(format!(
            "taken from a store in format {}, newer than this binary's {STORE_FORMAT}",
            header.format
        )));
    }
    let mut pairs = Vec::with_capacity(header.keys);
    for (i, line) in lines.enumerate() {
        let e: Entry =
            serde_json::from_str(line).map_err(|err| bad(format!("line {}: {err}", i + 2)))?;
        if !e.k.starts_with(keys::ROOT) {
            return Err(bad(format!(
                "line {}: key {:?} outside {}",
                i + 2,
                e.k,
                keys::ROOT
            )));
        }
        let value = match (e.v, e.hex) {
            (Some(v), None) => v.into_bytes(),
            (None, Some(h)) if h.len() % 2 == 0 => (0..h.len())
                .step_by(2)
                .map(|j| u8::from_str_radix(&h[j..j + 2], 16))
                .collect::<std::result::Result<Vec<u8>, _>>()
                .map_err(|err| bad(format!("line {}: {err}", i + 2)))?,
            _ => return Err(bad(format!("line {}: a value as v or hex", i + 2))),
        };
        pairs.push((e.k.into_bytes(), value));
    }
    if pairs.len() != header.keys {
        return Err(bad(format!(
            "the header says {} keys, the file holds {} (truncated?)",
            header.keys,
            pairs.len()
        )));
    }
    Ok(pairs)
}

/// Writes a backup's pairs into `store`, which must hold no metadata: the number written.
pub async fn restore(store: &dyn KvBackend, pairs: Vec<(Vec<u8>, Vec<u8>)>) -> Result<usize> {
    if !store.range(keys::ROOT.as_bytes(), 1).await?.is_empty() {
        return Err(ServerError::FailedPrecondition(
            "the target store already holds metadata: restore into a new data dir or an empty etcd namespace".into(),
        ));
    }
    let n = pairs.len();
    let ops: Vec<WriteOp> = pairs.into_iter().map(|(k, v)| WriteOp::put(k, v)).collect();
    for chunk in ops.chunks(store.max_batch_ops().clamp(1, 1000)) {
        store.batch(chunk.to_vec()).await?;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use meridian_store::MemoryBackend;

    #[tokio::test]
    async fn a_backup_round_trips_into_an_empty_store_only() {
        let source = MemoryBackend::new();
        ensure_format(&source).await.unwrap();
        source
            .batch(vec![
                WriteOp::put(keys::cluster_id_sequence(), b"7".to_vec()),
                WriteOp::put(format!("{}x/bin", keys::ROOT), vec![0xff, 0x00]),
                WriteOp::put(keys::election(), b"lease-bound".to_vec()),
            ])
            .await
            .unwrap();
        let text = take(&source).await.unwrap();
        let pairs = parse(&text).unwrap();
        assert_eq!(
            pairs.len(),
            3,
            "format, sequence, binary value; no election key"
        );
        let target = MemoryBackend::new();
        assert_eq!(restore(&target, pairs.clone()).await.unwrap(), 3);
        assert_eq!(
            target.get(&keys::cluster_id_sequence()).await.unwrap(),
            Some(b"7".to_vec())
        );
        let again = restore(&target, pairs).await.unwrap_err();
        assert!(
            again.to_string().contains("already holds metadata"),
            "{again}"
        );
        let cut: String = text.lines().take(2).map(|l| format!("{l}\n")).collect();
        assert!(parse(&cut).unwrap_err().to_string().contains("truncated"));
    }
}
