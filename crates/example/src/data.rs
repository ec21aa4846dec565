//! One replica of one shard: its rows per table partition, its log and positions. Pure data
//! and rules, no I/O: the node wraps it in a lock, the replication code ships its log.

use crate::wire::{KeyedRow, LogEntry, Row, Shipment, Snapshot, SnapshotPartition};
use meridian_model::{ColumnType, ReplicaRole, ShardVersion, TableDefinition, TableName};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// Log entries a leader keeps for followers to catch up from; one further behind gets a
/// snapshot.
pub const LOG_WINDOW: usize = 4096;

/// A table partition's rows, by identity key (see [`identity_key`]).
pub type Rows = BTreeMap<String, Row>;

/// One replica of one shard.
#[derive(Debug, Clone)]
pub struct ShardData {
    /// The version last received from Meridian.
    pub version: ShardVersion,
    /// Leader or follower.
    pub role: ReplicaRole,
    /// Table id to its name, for route lookups.
    pub names: BTreeMap<u64, TableName>,
    /// The (table id, partition) pairs Meridian placed on this shard.
    pub hosted: BTreeSet<(u64, u32)>,
    /// Table id to its definition, as last received from Meridian.
    pub definitions: BTreeMap<u64, TableDefinition>,
    /// (table id, partition) to rows.
    pub partitions: BTreeMap<(u64, u32), Rows>,
    /// The newest entries (at most [`LOG_WINDOW`]); the first follows `log_base`.
    log: VecDeque<LogEntry>,
    /// The position before the first entry in `log`, and that position's version.
    log_base: (u64, u64),
    /// Highest position applied here.
    pub applied: u64,
    /// Highest position known replicated to a majority.
    pub committed: u64,
}

impl ShardData {
    /// An empty replica.
    pub fn new(version: ShardVersion, role: ReplicaRole) -> Self {
        Self {
            version,
            role,
            names: BTreeMap::new(),
            hosted: BTreeSet::new(),
            definitions: BTreeMap::new(),
            partitions: BTreeMap::new(),
            log: VecDeque::new(),
            log_base: (0, 0),
            applied: 0,
            committed: 0,
        }
    }

    /// Forgets every row and position, keeping what Meridian said (version, role, tables).
    /// A replica that stops leading does this: it may hold entries no majority has, and the
    /// next leader's snapshot brings it back in line.
    pub fn reset_rows(&mut self) {
        self.partitions.clear();
        self.log.clear();
        self.log_base = (0, 0);
        self.applied = 0;
        self.committed = 0;
    }

    /// The version of the entry at position `seq`, if this replica still knows it.
    fn version_at(&self, seq: u64) -> Option<u64> {
        if seq == self.log_base.0 {
            return Some(self.log_base.1);
        }
        let first = self.log_base.0 + 1;
        if seq < first {
            return None;
        }
        self.log.get((seq - first) as usize).map(|e| e.version)
    }

    /// Appends and applies rows as the leader: the new entry's position.
    pub fn append(&mut self, table_id: u64, partition: u32, rows: Vec<Row>) -> u64 {
        let definition = self.definitions.get(&table_id);
        let rows = rows
            .into_iter()
            .map(|row| KeyedRow {
                key: identity_key(definition, &row),
                row,
            })
            .collect();
        let entry = LogEntry {
            seq: self.applied + 1,
            version: self.version.0,
            table_id,
            partition,
            rows,
        };
        self.apply(entry);
        self.applied
    }

    fn apply(&mut self, entry: LogEntry) {
        let part = self
            .partitions
            .entry((entry.table_id, entry.partition))
            .or_default();
        for r in &entry.rows {
            part.insert(r.key.clone(), r.row.clone());
        }
        self.applied = entry.seq;
        self.log.push_back(entry);
        while self.log.len() > LOG_WINDOW {
            if let Some(old) = self.log.pop_front() {
                self.log_base = (old.seq, old.version);
            }
        }
    }

    /// What to send a follower known to hold everything up to `matched` (`None`: unknown):
    /// the entries after it when the log still has them, else a snapshot.
    pub fn shipment_after(&self, matched: Option<u64>) -> Shipment {
        if let Some(m) = matched.filter(|&m| m <= self.applied) {
            if let Some(prev_version) = self.version_at(m) {
                let skip = (m - self.log_base.0) as usize;
                return Shipment::Entries {
                    prev_seq: m,
                    prev_version,
                    entries: self.log.iter().skip(skip).cloned().collect(),
                };
            }
        }
        Shipment::Snapshot(Snapshot {
            seq: self.applied,
            seq_version: self.version_at(self.applied).unwrap_or(0),
            partitions: self
                .partitions
                .iter()
                .map(|(&(table_id, partition), rows)| SnapshotPartition {
                    table_id,
                    partition,
                    rows: rows.clone(),
                })
                .collect(),
        })
    }

    /// Applies a leader's shipment as a follower. `false`: the entries do not follow what
    /// this replica holds (a gap, or a different leader's entry at `prev_seq`).
    pub fn receive(&mut self, shipment: Shipment) -> bool {
        match shipment {
            Shipment::Entries {
                prev_seq,
                prev_version,
                entries,
            } => {
                if self.applied != prev_seq || self.version_at(prev_seq) != Some(prev_version) {
                    return false;
                }
                for e in entries {
                    self.apply(e);
                }
                true
            }
            Shipment::Snapshot(s) => {
                self.partitions = s
                    .partitions
                    .into_iter()
                    .map(|p| ((p.table_id, p.partition), p.rows))
                    .collect();
                self.log.clear();
                self.log_base = (s.seq, s.seq_version);
                self.applied = s.seq;
                true
            }
        }
    }

    /// Rows held over all partitions.
    pub fn row_count(&self) -> u64 {
        self.partitions.values().map(|r| r.len() as u64).sum()
    }
}

/// A row's identity: the JSON array of its primary-key values, in key order; a table
/// without a primary key identifies a row by all its values. Writing a row with an identity
/// already present replaces it, so a retried write is harmless.
pub fn identity_key(definition: Option<&TableDefinition>, row: &Row) -> String {
    match definition.filter(|d| !d.primary_key.is_empty()) {
        Some(d) => key_of(&d.primary_key, row),
        None => Value::Object(row.clone()).to_string(),
    }
}

/// The identity key of the primary-key `values` (as a read names a row).
pub fn identity_of_values(values: &[Value]) -> String {
    Value::Array(values.to_vec()).to_string()
}

fn key_of(columns: &[String], row: &Row) -> String {
    let values: Vec<Value> = columns
        .iter()
        .map(|c| row.get(c).cloned().unwrap_or(Value::Null))
        .collect();
    identity_of_values(&values)
}

/// Checks `row` against `definition`: every column known, non-null columns without a
/// default present, values of the column's type. An empty definition accepts any row.
pub fn check_row(definition: &TableDefinition, row: &Row) -> Result<(), String> {
    if definition.is_empty() {
        return Ok(());
    }
    for (name, value) in row {
        let column = definition
            .column(name)
            .ok_or_else(|| format!("unknown column {name:?}"))?;
        if value.is_null() {
            if !column.nullable {
                return Err(format!("column {name:?} is not nullable"));
            }
            continue;
        }
        if !fits(column.data_type, value) {
            return Err(format!(
                "column {name:?} is {}, not {value}",
                column.data_type.name()
            ));
        }
    }
    for column in &definition.columns {
        let required = !column.nullable && column.default.is_none();
        if required && row.get(&column.name).is_none_or(Value::is_null) {
            return Err(format!(
                "column {:?} is not nullable and has no default",
                column.name
            ));
        }
    }
    Ok(())
}

fn fits(t: ColumnType, v: &Value) -> bool {
    use ColumnType::*;
    match t {
        Boolean => v.is_boolean(),
        Int8 | Int16 | Int32 | Int64 | Date | TimestampS | TimestampMs | TimestampUs
        | TimestampNs => v.is_i64() || v.is_u64(),
        Uint8 | Uint16 | Uint32 | Uint64 => v.is_u64(),
        Float32 | Float64 => v.is_number(),
        String | Binary => v.is_string(),
        Json => true,
    }
}

/// The text of a row's value in `column`, as the partition rule hashes it: strings as they
/// are, other values as their JSON text, absent values as the empty string.
pub fn key_text(row: &Row, column: &str) -> std::string::String {
    match row.get(column) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => std::string::String::new(),
        Some(v) => v.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meridian_model::Column;
    use serde_json::json;

    fn row(v: Value) -> Row {
        v.as_object().cloned().unwrap()
    }

    fn definition() -> TableDefinition {
        TableDefinition {
            columns: vec![
                Column::new("host", ColumnType::String, false),
                Column::new("ts", ColumnType::TimestampMs, false),
                Column::new("cpu", ColumnType::Float64, true),
            ],
            primary_key: vec!["host".into()],
            time_index: Some("ts".into()),
            ..Default::default()
        }
    }

    #[test]
    fn rows_are_checked_against_the_definition() {
        let d = definition();
        assert!(check_row(&d, &row(json!({"host": "a", "ts": 1, "cpu": 0.5}))).is_ok());
        let e = check_row(&d, &row(json!({"host": "a", "ts": 1, "mem": 1}))).unwrap_err();
        assert!(e.contains("unknown column \"mem\""), "{e}");
        let e = check_row(&d, &row(json!({"host": "a"}))).unwrap_err();
        assert!(e.contains("\"ts\" is not nullable"), "{e}");
        let e = check_row(&d, &row(json!({"host": 1, "ts": 1}))).unwrap_err();
        assert!(e.contains("is string"), "{e}");
    }

    #[test]
    fn a_follower_catches_up_from_entries_or_a_snapshot() {
        let mut leader = ShardData::new(ShardVersion(2), ReplicaRole::Leader);
        leader.definitions.insert(1, definition());
        for i in 0..3 {
            leader.append(1, 0, vec![row(json!({"host": format!("h{i}"), "ts": i}))]);
        }
        // Same host again: replaced, not added.
        leader.append(1, 0, vec![row(json!({"host": "h0", "ts": 9}))]);
        assert_eq!(leader.row_count(), 3);

        let mut follower = ShardData::new(ShardVersion(2), ReplicaRole::Follower);
        follower.definitions.insert(1, definition());
        // Unknown progress: a snapshot.
        let s = leader.shipment_after(None);
        assert!(matches!(s, Shipment::Snapshot(_)));
        assert!(follower.receive(s));
        assert_eq!(follower.applied, 4);
        leader.append(1, 1, vec![row(json!({"host": "h7", "ts": 7}))]);
        let s = leader.shipment_after(Some(4));
        assert!(matches!(&s, Shipment::Entries { entries, .. } if entries.len() == 1));
        assert!(follower.receive(s));
        assert_eq!(follower.applied, 5);
        assert_eq!(follower.partitions, leader.partitions);

        // A follower holding another leader's entry at the same position refuses entries.
        let mut other = ShardData::new(ShardVersion(1), ReplicaRole::Leader);
        for i in 0..5 {
            other.append(1, 0, vec![row(json!({"host": format!("x{i}"), "ts": i}))]);
        }
        leader.append(1, 0, vec![row(json!({"host": "h8", "ts": 8}))]);
        assert!(!other.receive(leader.shipment_after(Some(5))));
        assert!(other.receive(leader.shipment_after(None)));
        assert_eq!(other.partitions, leader.partitions);
    }
}
