//! Client-side request routing: the partition, shard and endpoints of a row.
//!
//! Routes come from [`MetaClient`]'s cache (refreshed by its watch or on a stale answer);
//! the row-to-partition function is `meridian_model::PartitionRule::partition_of`, the one
//! documented function, so a client in another language computes the same partition.

use crate::{ClientError, MetaClient};
use meridian_model::TableName;
use meridian_proto as pb;
use meridian_proto::convert::rule_from_wire;
use std::collections::BTreeMap;

/// Where one key of a table lives, per the route it was located with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The partition index.
    pub partition: u32,
    /// The shard holding it.
    pub shard: u32,
    /// The shard's version in the route (nodes refuse requests for older versions).
    pub version: u64,
    /// The leader's endpoint; `None` while the shard has no leader (failover in progress).
    pub leader: Option<String>,
    /// The followers' endpoints.
    pub followers: Vec<String>,
}

/// Which replicas a read may go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadPreference {
    /// Only the leader (reads that must see every acknowledged write).
    Leader,
    /// Followers first, then the leader (spreads load; reads may lag).
    PreferFollower,
    /// The leader first, then followers (when the leader cannot answer).
    PreferLeader,
}

/// Locates `key` (the values of the table's partition columns, in order) in `route`.
pub fn locate_in(route: &pb::TableRoute, key: &[&str]) -> Result<Location, ClientError> {
    let rule = rule_from_wire(route.partition_rule.clone());
    let partition = rule.partition_of(key);
    let p = route
        .partitions
        .iter()
        .find(|p| p.index == partition)
        .ok_or_else(|| {
            ClientError::Malformed(format!(
                "route of {}.{}.{} has no partition {partition}",
                route.catalog, route.schema, route.table
            ))
        })?;
    let shard = p.shard.clone().unwrap_or_default();
    Ok(Location {
        partition,
        shard: shard.shard_id,
        version: shard.version,
        leader: shard.leader.map(|l| l.endpoint),
        followers: shard.followers.into_iter().map(|f| f.endpoint).collect(),
    })
}

/// Groups `rows` (each with its key) into one batch per leader endpoint. A row whose
/// partition has no leader right now fails the whole split with `Unavailable`, naming the
/// partition: retry after the failover (the route watch brings the new leader).
pub fn split_writes_in<R>(
    route: &pb::TableRoute,
    rows: impl IntoIterator<Item = (Vec<String>, R)>,
) -> Result<BTreeMap<String, Vec<R>>, ClientError> {
    let mut batches: BTreeMap<String, Vec<R>> = BTreeMap::new();
    for (key, row) in rows {
        let parts: Vec<&str> = key.iter().map(String::as_str).collect();
        let at = locate_in(route, &parts)?;
        let leader = at.leader.ok_or_else(|| {
            ClientError::Status(tonic::Status::unavailable(format!(
                "partition {} of {}.{}.{} has no leader (failover in progress); retry",
                at.partition, route.catalog, route.schema, route.table
            )))
        })?;
        batches.entry(leader).or_default().push(row);
    }
    Ok(batches)
}

/// The endpoints a read of `partition` may go to, in the order to try them.
pub fn read_targets_in(
    route: &pb::TableRoute,
    partition: u32,
    preference: ReadPreference,
) -> Vec<String> {
    let Some(shard) = route
        .partitions
        .iter()
        .find(|p| p.index == partition)
        .and_then(|p| p.shard.clone())
    else {
        return Vec::new();
    };
    let leader = shard.leader.map(|l| l.endpoint);
    let followers = shard.followers.into_iter().map(|f| f.endpoint);
    match preference {
        ReadPreference::Leader => leader.into_iter().collect(),
        ReadPreference::PreferLeader => leader.into_iter().chain(followers).collect(),
        ReadPreference::PreferFollower => followers.chain(leader).collect(),
    }
}

impl MetaClient {
    /// Where `key` of `table` lives, from the cached route (fetched if not cached).
    pub async fn locate(&self, table: &TableName, key: &[&str]) -> Result<Location, ClientError> {
        locate_in(&self.route(table).await?, key)
    }

    /// Groups rows of `table` into one batch per leader endpoint (see [`split_writes_in`]).
    pub async fn split_writes<R>(
        &self,
        table: &TableName,
        rows: impl IntoIterator<Item = (Vec<String>, R)>,
    ) -> Result<BTreeMap<String, Vec<R>>, ClientError> {
        split_writes_in(&self.route(table).await?, rows)
    }

    /// The endpoints a read of `partition` of `table` may go to, in order.
    pub async fn read_targets(
        &self,
        table: &TableName,
        partition: u32,
        preference: ReadPreference,
    ) -> Result<Vec<String>, ClientError> {
        Ok(read_targets_in(
            &self.route(table).await?,
            partition,
            preference,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meridian_model::PartitionRule;
    use meridian_proto::convert::rule_to_wire;

    fn addr(n: u64) -> pb::NodeAddress {
        pb::NodeAddress {
            node_id: n,
            endpoint: format!("10.0.0.{n}:4000"),
        }
    }

    /// 4 hash partitions on shards 10..13; shard 12 has no leader.
    fn route() -> pb::TableRoute {
        pb::TableRoute {
            table_id: 1,
            catalog: "default".into(),
            schema: "public".into(),
            table: "t".into(),
            partitions: (0..4)
                .map(|i| pb::PartitionRoute {
                    index: i,
                    shard: Some(pb::ShardRoute {
                        shard_id: 10 + i,
                        version: 3,
                        leader: (i != 2).then(|| addr(u64::from(i) + 1)),
                        followers: vec![addr(7), addr(8)],
                    }),
                })
                .collect(),
            definition_version: 0,
            partition_rule: rule_to_wire(&PartitionRule::Hash {
                count: 4,
                columns: vec!["host".into()],
            }),
        }
    }

    #[test]
    fn keys_are_located_by_the_documented_hash_and_grouped_by_leader() {
        let r = route();
        let at = locate_in(&r, &["host-1"]).unwrap();
        // hash_key(["host-1"]) = 0x4db34c706759b043; % 4 = 3.
        assert_eq!(at.partition, 3);
        assert_eq!(at.shard, 13);
        assert_eq!(at.leader.as_deref(), Some("10.0.0.4:4000"));
        assert_eq!(at.followers.len(), 2);

        let rows: Vec<(Vec<String>, usize)> = (0..200)
            .map(|i| (vec![format!("h{i}")], i))
            .filter(|(k, _)| locate_in(&r, &[k[0].as_str()]).unwrap().partition != 2)
            .collect();
        let n = rows.len();
        let batches = split_writes_in(&r, rows).unwrap();
        assert_eq!(batches.values().map(Vec::len).sum::<usize>(), n);
        for (leader, rows) in &batches {
            for i in rows {
                let at = locate_in(&r, &[format!("h{i}").as_str()]).unwrap();
                assert_eq!(at.leader.as_ref(), Some(leader));
            }
        }
        // A row of the leaderless partition fails the split, naming it.
        let key = (0..)
            .map(|i| format!("x{i}"))
            .find(|k| locate_in(&r, &[k.as_str()]).unwrap().partition == 2)
            .unwrap();
        let err = split_writes_in(&r, [(vec![key], 0)]).unwrap_err();
        assert!(err.to_string().contains("partition 2"), "{err}");
    }

    #[test]
    fn reads_go_where_the_preference_says() {
        let r = route();
        assert_eq!(
            read_targets_in(&r, 0, ReadPreference::Leader),
            vec!["10.0.0.1:4000"]
        );
        assert_eq!(
            read_targets_in(&r, 0, ReadPreference::PreferFollower),
            vec!["10.0.0.7:4000", "10.0.0.8:4000", "10.0.0.1:4000"]
        );
        assert_eq!(
            read_targets_in(&r, 0, ReadPreference::PreferLeader)[0],
            "10.0.0.1:4000"
        );
        assert!(read_targets_in(&r, 2, ReadPreference::Leader).is_empty());
        assert!(read_targets_in(&r, 9, ReadPreference::PreferLeader).is_empty());
    }
}
