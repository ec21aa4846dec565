//! Catalog objects: tables and their partition rules.

use crate::{validate_name, ModelError, ShardId, TableId};
use serde::{Deserialize, Serialize};

/// The most partitions one table may have.
pub const MAX_PARTITIONS: u32 = 1024;

/// Fully qualified table name.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TableName {
    /// Catalog.
    pub catalog: String,
    /// Schema within the catalog.
    pub schema: String,
    /// Table within the schema.
    pub table: String,
}

impl TableName {
    /// Builds a name after validating each part.
    pub fn new(catalog: &str, schema: &str, table: &str) -> Result<Self, ModelError> {
        validate_name("catalog", catalog)?;
        validate_name("schema", schema)?;
        validate_name("table", table)?;
        Ok(Self {
            catalog: catalog.into(),
            schema: schema.into(),
            table: table.into(),
        })
    }
}

impl std::fmt::Display for TableName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.catalog, self.schema, self.table)
    }
}

/// How a table is split into partitions.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum PartitionRule {
    /// One partition.
    #[default]
    None,
    /// `count` partitions by hash of the key columns.
    Hash {
        /// Number of partitions.
        count: u32,
        /// Key columns hashed.
        columns: Vec<String>,
    },
    /// Range partitions on one column: partition i holds keys in [bounds[i-1], bounds[i]).
    Range {
        /// The key column.
        column: String,
        /// Ascending split points; partitions = bounds + 1.
        bounds: Vec<String>,
    },
}

impl PartitionRule {
    /// Number of partitions the rule makes.
    pub fn partition_count(&self) -> u32 {
        match self {
            PartitionRule::None => 1,
            PartitionRule::Hash { count, .. } => *count,
            PartitionRule::Range { bounds, .. } => bounds.len() as u32 + 1,
        }
    }

    /// The partition a row whose partition columns hold `key` belongs to: the one stable,
    /// documented function every client uses (docs/integration.md, "Locating a row"), so
    /// that a client in any language computes the same partition.
    ///
    /// - `None`: partition 0.
    /// - `Hash`: FNV-1a 64 of the key encoding, modulo the count. The key encoding is, for
    ///   each value of `key` in column order, its UTF-8 length as a 4-byte big-endian integer
    ///   followed by its UTF-8 bytes. A table with no hash columns hashes its primary key
    ///   the same way (the caller passes it).
    /// - `Range`: over `key[0]` compared bytewise (UTF-8): partition `i` holds keys `k` with
    ///   `bounds[i-1] <= k < bounds[i]`; partition 0 everything below `bounds[0]`, the last
    ///   everything from the last bound up.
    pub fn partition_of(&self, key: &[&str]) -> u32 {
        match self {
            PartitionRule::None => 0,
            PartitionRule::Hash { count, .. } => {
                (hash_key(key) % u64::from((*count).max(1))) as u32
            }
            PartitionRule::Range { bounds, .. } => {
                let k = key.first().copied().unwrap_or("");
                bounds.partition_point(|b| b.as_bytes() <= k.as_bytes()) as u32
            }
        }
    }

    /// Checks counts, column names and bound order.
    pub fn validate(&self) -> Result<(), ModelError> {
        let bad = |m: String| Err(ModelError::InvalidPartitionRule(m));
        match self {
            PartitionRule::None => Ok(()),
            PartitionRule::Hash { count, columns } => {
                if *count == 0 || *count > MAX_PARTITIONS {
                    return bad(format!(
                        "hash partition count must be 1..={MAX_PARTITIONS}, got {count}"
                    ));
                }
                for c in columns {
                    validate_name("column", c)?;
                }
                Ok(())
            }
            PartitionRule::Range { column, bounds } => {
                validate_name("column", column)?;
                if bounds.len() as u32 + 1 > MAX_PARTITIONS {
                    return bad(format!(
                        "range partitions must be at most {MAX_PARTITIONS}, got {}",
                        bounds.len() + 1
                    ));
                }
                if bounds.windows(2).any(|w| w[0] >= w[1]) {
                    return bad("range bounds must be strictly ascending".into());
                }
                Ok(())
            }
        }
    }
}

/// FNV-1a 64 over the documented key encoding (see [`PartitionRule::partition_of`]).
pub fn hash_key(key: &[&str]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h = OFFSET;
    let mut eat = |bytes: &[u8]| {
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(PRIME);
        }
    };
    for part in key {
        eat(&(part.len() as u32).to_be_bytes());
        eat(part.as_bytes());
    }
    h
}

/// One partition of a table and the shard it lives in.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Partition {
    /// Index within the table, 0-based.
    pub index: u32,
    /// Shard holding it.
    pub shard: ShardId,
}

/// A table, as persisted.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Table {
    /// Never-reused id.
    pub id: TableId,
    /// Its name.
    pub name: TableName,
    /// How it is split.
    pub rule: PartitionRule,
    /// Where each partition lives.
    pub partitions: Vec<Partition>,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_at_ms: u64,
    /// Bumped by every write of the record. Compare-and-swaps check it (through the table's
    /// revision key), never the encoded record; 0 in records written before it existed.
    #[serde(default)]
    pub revision: u64,
    /// Its columns, keys and options (empty when created without).
    #[serde(default)]
    pub definition: crate::TableDefinition,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_are_located_by_the_documented_functions() {
        // FNV-1a 64 reference values, over the empty input and over "a" (no encoding).
        let fnv = |bytes: &[u8]| {
            let mut h: u64 = 0xcbf2_9ce4_8422_2325;
            for b in bytes {
                h ^= u64::from(*b);
                h = h.wrapping_mul(0x0000_0100_0000_01b3);
            }
            h
        };
        assert_eq!(fnv(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv(b"a"), 0xaf63_dc4c_8601_ec8c);
        // The key encoding: length-prefixed parts, so ["ab", "c"] and ["a", "bc"] differ.
        assert_eq!(hash_key(&["a"]), fnv(&[0, 0, 0, 1, b'a']));
        assert_ne!(hash_key(&["ab", "c"]), hash_key(&["a", "bc"]));
        // Pinned: changing the function moves every row of every table.
        assert_eq!(hash_key(&["host-1"]), fnv(b"\0\0\0\x06host-1"));
        let hash = PartitionRule::Hash {
            count: 8,
            columns: vec!["host".into()],
        };
        assert_eq!(hash_key(&["host-1"]), 0x4db3_4c70_6759_b043);
        assert_eq!(hash.partition_of(&["host-1"]), 3);
        let range = PartitionRule::Range {
            column: "k".into(),
            bounds: vec!["g".into(), "p".into()],
        };
        assert_eq!(range.partition_of(&["a"]), 0);
        assert_eq!(
            range.partition_of(&["g"]),
            1,
            "a bound starts its partition"
        );
        assert_eq!(range.partition_of(&["o"]), 1);
        assert_eq!(range.partition_of(&["p"]), 2);
        assert_eq!(range.partition_of(&["zzz"]), 2);
        assert_eq!(PartitionRule::None.partition_of(&["x"]), 0);
    }

    #[test]
    fn hash_count_zero_or_absurd_is_refused() {
        for count in [0, MAX_PARTITIONS + 1, u32::MAX] {
            let r = PartitionRule::Hash {
                count,
                columns: vec![],
            };
            assert!(r.validate().is_err());
        }
    }

    #[test]
    fn range_bounds_must_ascend() {
        let r = PartitionRule::Range {
            column: "k".into(),
            bounds: vec!["b".into(), "a".into()],
        };
        assert!(r.validate().is_err());
        let r = PartitionRule::Range {
            column: "k".into(),
            bounds: vec!["a".into(), "b".into()],
        };
        assert_eq!(r.partition_count(), 3);
        r.validate().unwrap();
    }
}
