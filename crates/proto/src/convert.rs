//! Conversions between wire messages and the domain model.
//!
//! They live here because Rust's orphan rule puts `From` impls beside one of the two types.

use crate as pb;
use meridian_model as m;

impl From<m::ReplicaRole> for pb::Role {
    fn from(r: m::ReplicaRole) -> Self {
        match r {
            m::ReplicaRole::Leader => pb::Role::Leader,
            m::ReplicaRole::Follower => pb::Role::Follower,
        }
    }
}

/// The model role of a wire role; `None` for `ROLE_UNSPECIFIED` or an unknown value.
pub fn role_from_wire(r: i32) -> Option<m::ReplicaRole> {
    match pb::Role::try_from(r).ok()? {
        pb::Role::Leader => Some(m::ReplicaRole::Leader),
        pb::Role::Follower => Some(m::ReplicaRole::Follower),
        pb::Role::Unspecified => None,
    }
}

impl From<m::ShardStatus> for pb::ShardStatus {
    fn from(s: m::ShardStatus) -> Self {
        match s {
            m::ShardStatus::Ready => pb::ShardStatus::Ready,
            m::ShardStatus::Opening => pb::ShardStatus::Opening,
            m::ShardStatus::Closed => pb::ShardStatus::Closed,
        }
    }
}

/// The model status of a wire status; unknown values count as `Opening` (not yet usable).
pub fn status_from_wire(s: i32) -> m::ShardStatus {
    match pb::ShardStatus::try_from(s) {
        Ok(pb::ShardStatus::Ready) => m::ShardStatus::Ready,
        Ok(pb::ShardStatus::Closed) => m::ShardStatus::Closed,
        _ => m::ShardStatus::Opening,
    }
}

impl From<pb::Labels> for m::NodeLabels {
    fn from(l: pb::Labels) -> Self {
        Self {
            zone: l.zone,
            rack: l.rack,
            host: l.host,
        }
    }
}

impl From<m::NodeLabels> for pb::Labels {
    fn from(l: m::NodeLabels) -> Self {
        Self {
            zone: l.zone,
            rack: l.rack,
            host: l.host,
        }
    }
}

impl From<pb::Capacity> for m::NodeCapacity {
    fn from(c: pb::Capacity) -> Self {
        Self {
            cpu_cores: c.cpu_cores,
            memory_bytes: c.memory_bytes,
            disk_bytes: c.disk_bytes,
        }
    }
}

impl From<m::NodeCapacity> for pb::Capacity {
    fn from(c: m::NodeCapacity) -> Self {
        Self {
            cpu_cores: c.cpu_cores,
            memory_bytes: c.memory_bytes,
            disk_bytes: c.disk_bytes,
        }
    }
}

impl From<pb::NodeStats> for m::NodeStats {
    fn from(s: pb::NodeStats) -> Self {
        Self {
            cpu_usage: s.cpu_usage,
            memory_used_bytes: s.memory_used_bytes,
            disk_used_bytes: s.disk_used_bytes,
            disk_total_bytes: s.disk_total_bytes,
            read_units_per_sec: s.read_units_per_sec,
            write_units_per_sec: s.write_units_per_sec,
        }
    }
}

impl From<m::NodeStats> for pb::NodeStats {
    fn from(s: m::NodeStats) -> Self {
        Self {
            cpu_usage: s.cpu_usage,
            memory_used_bytes: s.memory_used_bytes,
            disk_used_bytes: s.disk_used_bytes,
            disk_total_bytes: s.disk_total_bytes,
            read_units_per_sec: s.read_units_per_sec,
            write_units_per_sec: s.write_units_per_sec,
        }
    }
}

impl From<m::ShardReport> for pb::ShardReport {
    fn from(r: m::ShardReport) -> Self {
        Self {
            shard_id: r.shard.0,
            version: r.version.0,
            role: pb::Role::from(r.role) as i32,
            status: pb::ShardStatus::from(r.status) as i32,
            size_bytes: r.stats.size_bytes,
            rows: r.stats.rows,
            read_units_per_sec: r.stats.read_units_per_sec,
            write_units_per_sec: r.stats.write_units_per_sec,
            applied_index: r.log.applied,
            committed_index: r.log.committed,
            leased: r.leased,
        }
    }
}

/// The model report of a wire report; `None` when its role is unspecified.
pub fn shard_report_from_wire(r: &pb::ShardReport) -> Option<m::ShardReport> {
    Some(m::ShardReport {
        shard: m::ShardId(r.shard_id),
        version: m::ShardVersion(r.version),
        role: role_from_wire(r.role)?,
        status: status_from_wire(r.status),
        stats: m::ShardStats {
            size_bytes: r.size_bytes,
            rows: r.rows,
            read_units_per_sec: r.read_units_per_sec,
            write_units_per_sec: r.write_units_per_sec,
        },
        log: m::LogPosition {
            applied: r.applied_index,
            committed: r.committed_index,
        },
        leased: r.leased,
    })
}

/// The wire form of a partition rule; `None` for a single partition.
pub fn rule_to_wire(r: &m::PartitionRule) -> Option<pb::PartitionRule> {
    {
        let rule = match r {
            m::PartitionRule::None => return None,
            m::PartitionRule::Hash { count, columns } => {
                pb::partition_rule::Rule::Hash(pb::HashPartitions {
                    count: *count,
                    columns: columns.clone(),
                })
            }
            m::PartitionRule::Range { column, bounds } => {
                pb::partition_rule::Rule::Range(pb::RangePartitions {
                    column: column.clone(),
                    bounds: bounds.clone(),
                })
            }
        };
        Some(pb::PartitionRule { rule: Some(rule) })
    }
}

/// The model rule of a wire rule; absent means a single partition.
pub fn rule_from_wire(r: Option<pb::PartitionRule>) -> m::PartitionRule {
    {
        match r.and_then(|r| r.rule) {
            None => m::PartitionRule::None,
            Some(pb::partition_rule::Rule::Hash(h)) => m::PartitionRule::Hash {
                count: h.count,
                columns: h.columns,
            },
            Some(pb::partition_rule::Rule::Range(r)) => m::PartitionRule::Range {
                column: r.column,
                bounds: r.bounds,
            },
        }
    }
}

impl From<&m::Table> for pb::TableInfo {
    fn from(t: &m::Table) -> Self {
        Self {
            id: t.id.0,
            catalog: t.name.catalog.clone(),
            schema: t.name.schema.clone(),
            name: t.name.table.clone(),
            partition_rule: rule_to_wire(&t.rule),
            partitions: t
                .partitions
                .iter()
                .map(|p| pb::PartitionPlacement {
                    index: p.index,
                    shard_id: p.shard.0,
                })
                .collect(),
            created_at_ms: t.created_at_ms,
            definition: definition_to_wire(&t.definition),
        }
    }
}

/// A definition on the wire; `None` for an empty one.
pub fn definition_to_wire(d: &m::TableDefinition) -> Option<pb::TableDefinition> {
    if d.is_empty() {
        return None;
    }
    Some(pb::TableDefinition {
        columns: d.columns.iter().map(column_to_wire).collect(),
        primary_key: d.primary_key.clone(),
        time_index: d.time_index.clone().unwrap_or_default(),
        options: d.options.clone().into_iter().collect(),
        version: d.version,
    })
}

/// A column on the wire.
pub fn column_to_wire(c: &m::Column) -> pb::ColumnDef {
    pb::ColumnDef {
        name: c.name.clone(),
        r#type: c.data_type.name().to_string(),
        not_null: !c.nullable,
        default_value: c.default.clone(),
    }
}

/// A column from the wire; an unknown type is refused with the list of known ones.
pub fn column_from_wire(c: pb::ColumnDef) -> Result<m::Column, m::ModelError> {
    Ok(m::Column {
        data_type: m::ColumnType::parse(&c.r#type).map_err(|e| match e {
            m::ModelError::InvalidDefinition(msg) => {
                m::ModelError::InvalidDefinition(format!("column {:?}: {msg}", c.name))
            }
            other => other,
        })?,
        name: c.name,
        nullable: !c.not_null,
        default: c.default_value,
    })
}

/// A definition from the wire (absent: empty); unknown column types are refused with the
/// list of known ones. Not validated further: see `TableDefinition::validate`.
pub fn definition_from_wire(
    d: Option<pb::TableDefinition>,
) -> Result<m::TableDefinition, m::ModelError> {
    let Some(d) = d else {
        return Ok(m::TableDefinition::default());
    };
    let columns = d
        .columns
        .into_iter()
        .map(column_from_wire)
        .collect::<Result<Vec<_>, m::ModelError>>()?;
    Ok(m::TableDefinition {
        columns,
        primary_key: d.primary_key,
        time_index: Some(d.time_index).filter(|t| !t.is_empty()),
        options: d.options.into_iter().collect(),
        version: d.version,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_rule_round_trips() {
        for rule in [
            m::PartitionRule::None,
            m::PartitionRule::Hash {
                count: 4,
                columns: vec!["host".into()],
            },
            m::PartitionRule::Range {
                column: "ts".into(),
                bounds: vec!["a".into(), "m".into()],
            },
        ] {
            assert_eq!(rule_from_wire(rule_to_wire(&rule)), rule);
        }
    }

    #[test]
    fn unspecified_role_is_refused() {
        let r = pb::ShardReport {
            shard_id: 1,
            version: 2,
            role: 0,
            ..Default::default()
        };
        assert!(shard_report_from_wire(&r).is_none());
    }
}
