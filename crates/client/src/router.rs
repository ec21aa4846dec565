//! Client-side request routing: the partition, shard and endpoints of a row.
//!
//! Routes come from [`MetaClient`]'s cache (refreshed by its watch or on a stale answer);
//! the row-to-partition function is `meridian_model::PartitionRule::partition_of`, the one
//! documented function, so a client in another language computes the same partition.

use crate::{ClientError, MetaClient};
use meridian_model::{PartitionRule, TableName};
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
    /// The leader's zone label ("" if none or no leader).
    pub leader_zone: String,
    /// Each follower's zone label, in the order of `followers`.
    pub follower_zones: Vec<String>,
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

/// A table's route compiled for locating keys: the rule decoded once and the partitions
/// indexed, so that locating a key allocates nothing (the cache keeps routes as received).
#[derive(Debug, Clone)]
pub struct TableLocator {
    name: String,
    rule: PartitionRule,
    /// By partition index; `None` for an index the route lacks.
    partitions: Vec<Option<Location>>,
}

impl TableLocator {
    /// Compiles `route`.
    pub fn new(route: &pb::TableRoute) -> Self {
        let rule = rule_from_wire(route.partition_rule.clone());
        let count = rule.partition_count() as usize;
        let mut partitions = vec![None; count];
        for p in &route.partitions {
            let shard = p.shard.clone().unwrap_or_default();
            if let Some(slot) = partitions.get_mut(p.index as usize) {
                *slot = Some(Location {
                    partition: p.index,
                    shard: shard.shard_id,
                    version: shard.version,
                    leader_zone: shard
                        .leader
                        .as_ref()
                        .map(|l| l.zone.clone())
                        .unwrap_or_default(),
                    leader: shard.leader.map(|l| l.endpoint),
                    follower_zones: shard.followers.iter().map(|f| f.zone.clone()).collect(),
                    followers: shard.followers.into_iter().map(|f| f.endpoint).collect(),
                });
            }
        }
        Self {
            name: format!("{}.{}.{}", route.catalog, route.schema, route.table),
            rule,
            partitions,
        }
    }

    /// The table's partition rule.
    pub fn rule(&self) -> &PartitionRule {
        &self.rule
    }

    /// Where `key` (the values of the table's partition columns, in order) lives.
    pub fn locate(&self, key: &[&str]) -> Result<&Location, ClientError> {
        let partition = self.rule.partition_of(key);
        self.partition(partition).ok_or_else(|| {
            ClientError::Malformed(format!(
                "route of {} has no partition {partition}",
                self.name
            ))
        })
    }

    /// Partition `index`, if the route has it.
    pub fn partition(&self, index: u32) -> Option<&Location> {
        self.partitions.get(index as usize).and_then(Option::as_ref)
    }

    /// Groups `rows` (each with its key) into one batch per leader endpoint. A row whose
    /// partition has no leader right now fails the whole split with `Unavailable`, naming
    /// the partition: retry after the failover (the route watch brings the new leader).
    pub fn split_writes<R>(
        &self,
        rows: impl IntoIterator<Item = (Vec<String>, R)>,
    ) -> Result<BTreeMap<String, Vec<R>>, ClientError> {
        let mut batches: BTreeMap<String, Vec<R>> = BTreeMap::new();
        for (key, row) in rows {
            let parts: Vec<&str> = key.iter().map(String::as_str).collect();
            let at = self.locate(&parts)?;
            let leader = at.leader.as_ref().ok_or_else(|| {
                ClientError::Status(tonic::Status::unavailable(format!(
                    "partition {} of {} has no leader (failover in progress); retry",
                    at.partition, self.name
                )))
            })?;
            batches.entry(leader.clone()).or_default().push(row);
        }
        Ok(batches)
    }

    /// The endpoints a read of `partition` may go to, in the order to try them.
    pub fn read_targets(&self, partition: u32, preference: ReadPreference) -> Vec<String> {
        self.read_targets_near(partition, preference, "")
    }

    /// Like [`TableLocator::read_targets`], with the followers in the reader's `zone` before
    /// the others (a read that stays in its zone is faster and costs no cross-zone
    /// traffic). An empty `zone` keeps the route's order.
    pub fn read_targets_near(
        &self,
        partition: u32,
        preference: ReadPreference,
        zone: &str,
    ) -> Vec<String> {
        let Some(at) = self.partition(partition) else {
            return Vec::new();
        };
        let leader = at.leader.iter().cloned();
        let mut followers: Vec<(&String, &String)> =
            at.followers.iter().zip(&at.follower_zones).collect();
        if !zone.is_empty() {
            // Stable: the route's order within each group.
            followers.sort_by_key(|(_, z)| z.as_str() != zone);
        }
        let followers = followers.into_iter().map(|(f, _)| f.clone());
        match preference {
            ReadPreference::Leader => leader.collect(),
            ReadPreference::PreferLeader => leader.chain(followers).collect(),
            ReadPreference::PreferFollower => followers.chain(leader).collect(),
        }
    }
}

impl MetaClient {
    /// The route of `table` compiled for locating keys (from the cache, else fetched).
    pub async fn locator(&self, table: &TableName) -> Result<TableLocator, ClientError> {
        Ok(TableLocator::new(&self.route(table).await?))
    }

    /// Where `key` of `table` lives (see [`TableLocator::locate`]).
    pub async fn locate(&self, table: &TableName, key: &[&str]) -> Result<Location, ClientError> {
        self.locator(table).await?.locate(key).cloned()
    }

    /// Groups rows of `table` into one batch per leader endpoint (see
    /// [`TableLocator::split_writes`]).
    pub async fn split_writes<R>(
        &self,
        table: &TableName,
        rows: impl IntoIterator<Item = (Vec<String>, R)>,
    ) -> Result<BTreeMap<String, Vec<R>>, ClientError> {
        self.locator(table).await?.split_writes(rows)
    }

    /// The endpoints a read of `partition` of `table` may go to, in order.
    pub async fn read_targets(
        &self,
        table: &TableName,
        partition: u32,
        preference: ReadPreference,
    ) -> Result<Vec<String>, ClientError> {
        Ok(self
            .locator(table)
            .await?
            .read_targets(partition, preference))
    }

    /// Like [`MetaClient::read_targets`], replicas in `zone` first (see
    /// [`TableLocator::read_targets_near`]).
    pub async fn read_targets_near(
        &self,
        table: &TableName,
        partition: u32,
        preference: ReadPreference,
        zone: &str,
    ) -> Result<Vec<String>, ClientError> {
        Ok(self
            .locator(table)
            .await?
            .read_targets_near(partition, preference, zone))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meridian_proto::convert::rule_to_wire;

    fn addr(n: u64) -> pb::NodeAddress {
        pb::NodeAddress {
            node_id: n,
            endpoint: format!("10.0.0.{n}:4000"),
            zone: format!("zone-{}", n % 2),
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
        let r = TableLocator::new(&route());
        let at = r.locate(&["host-1"]).unwrap();
        // hash_key(["host-1"]) = 0x4db34c706759b043; % 4 = 3.
        assert_eq!(at.partition, 3);
        assert_eq!(at.shard, 13);
        assert_eq!(at.leader.as_deref(), Some("10.0.0.4:4000"));
        assert_eq!(at.followers.len(), 2);

        let rows: Vec<(Vec<String>, usize)> = (0..200)
            .map(|i| (vec![format!("h{i}")], i))
            .filter(|(k, _)| r.locate(&[k[0].as_str()]).unwrap().partition != 2)
            .collect();
        let n = rows.len();
        let batches = r.split_writes(rows).unwrap();
        assert_eq!(batches.values().map(Vec::len).sum::<usize>(), n);
        for (leader, rows) in &batches {
            for i in rows {
                let at = r.locate(&[format!("h{i}").as_str()]).unwrap();
                assert_eq!(at.leader.as_ref(), Some(leader));
            }
        }
        // A row of the leaderless partition fails the split, naming it.
        let key = (0..)
            .map(|i| format!("x{i}"))
            .find(|k| r.locate(&[k.as_str()]).unwrap().partition == 2)
            .unwrap();
        let err = r.split_writes([(vec![key], 0)]).unwrap_err();
        assert!(err.to_string().contains("partition 2"), "{err}");
    }

    #[test]
    fn reads_go_where_the_preference_says() {
        let r = TableLocator::new(&route());
        assert_eq!(
            r.read_targets(0, ReadPreference::Leader),
            vec!["10.0.0.1:4000"]
        );
        assert_eq!(
            r.read_targets(0, ReadPreference::PreferFollower),
            vec!["10.0.0.7:4000", "10.0.0.8:4000", "10.0.0.1:4000"]
        );
        assert_eq!(
            r.read_targets(0, ReadPreference::PreferLeader)[0],
            "10.0.0.1:4000"
        );
        assert!(r.read_targets(2, ReadPreference::Leader).is_empty());
        // Followers 7 (zone-1) and 8 (zone-0): a reader in zone-0 tries 8 first.
        assert_eq!(
            r.read_targets_near(0, ReadPreference::PreferFollower, "zone-0"),
            vec!["10.0.0.8:4000", "10.0.0.7:4000", "10.0.0.1:4000"]
        );
        assert_eq!(
            r.read_targets_near(0, ReadPreference::PreferLeader, "zone-0"),
            vec!["10.0.0.1:4000", "10.0.0.8:4000", "10.0.0.7:4000"]
        );
        assert!(r.read_targets(9, ReadPreference::PreferLeader).is_empty());
    }
}
