//! THE key layout. Every key Meridian stores is built here and nowhere else.
//!
//! All keys live under `/meridian/v1/`. Ids are zero-padded decimal (cluster and shard ids
//! to 10 digits, node and table ids to 20) so lexical order is numeric order and a prefix
//! scan lists a collection by id. Names are validated by `meridian_model::validate_name`,
//! which refuses `/`, so a name never spills into the next path segment. Ids stored as
//! values are decimal ASCII ([`encode_id`] / [`decode_id`]); objects are JSON.
//!
//! `{c}` is a `ClusterId` padded to 10 digits.
//!
//! | key pattern                                          | value                | written by                         | deleted when                 |
//! |------------------------------------------------------|----------------------|------------------------------------|------------------------------|
//! | `/meridian/v1/format`                               | the layout's format version (decimal; see [`crate::format`]) | the first start on an empty store; each migration | never |
//! | `/meridian/v1/election/leader`                       | the leader's name and addresses (JSON), under its etcd lease | the elected server (etcd only) | resignation, or its lease runs out |
//! | `/meridian/v1/events/{seq:020}`                      | `Event` JSON (the event log) | the serving leader, in the background after the event | once 10,000 newer events exist |
//! | `/meridian/v1/id/cluster`                            | high-water cluster id| `SequenceAllocator`                | never                        |
//! | `/meridian/v1/cluster_names/{name}`                  | cluster id           | cluster creation (CAS when absent) | the cluster is dropped       |
//! | `/meridian/v1/clusters/{c}/config`                   | `ClusterConfig` JSON | cluster creation                   | the cluster is dropped       |
//! | `/meridian/v1/clusters/{c}/id/node`                  | high-water node id   | `SequenceAllocator`                | the cluster is dropped       |
//! | `/meridian/v1/clusters/{c}/id/table`                 | high-water table id  | `SequenceAllocator`                | the cluster is dropped       |
//! | `/meridian/v1/clusters/{c}/id/shard`                 | highest shard id ever created (absent: only the initial shards) | a split, in its commit | the cluster is dropped |
//! | `/meridian/v1/clusters/{c}/nodes/{node:020}`         | `Node` JSON          | registration, state changes        | the node is removed          |
//! | `/meridian/v1/clusters/{c}/node_names/{name}`        | node id              | first registration (CAS absent)    | the node is removed          |
//! | `/meridian/v1/clusters/{c}/shards/{shard:010}`       | `Shard` JSON         | shard creation, operator steps     | the cluster is dropped       |
//! | `/meridian/v1/clusters/{c}/copysets`                 | `CopysetFamily` JSON (copyset mode only) | first shard placement (with the shards); the scheduling loop when nodes join, drain, die past the repair delay, or leave | the cluster is dropped |
//! | `/meridian/v1/clusters/{c}/scheduler_switches`       | `{"maintenance": bool, "paused": [name]}` JSON | `ctl maintenance`, `ctl scheduler pause/resume` | the cluster is dropped |
//! | `/meridian/v1/clusters/{c}/runtime_settings`         | `{"key": "value text"}` JSON (overrides only) | `ctl config set/reset` | the cluster is dropped |
//! | `/meridian/v1/clusters/{c}/catalogs/{catalog}`       | reserved (a catalog exists through its schemas; DropCatalog drops them) | nothing yet | - |
//! | `/meridian/v1/clusters/{c}/schemas/{catalog}/{schema}` | schema JSON        | DDL: create schema                 | DDL: drop schema             |
//! | `/meridian/v1/clusters/{c}/tables/{table:020}`       | `Table` JSON         | DDL: create / alter table          | DDL: drop table              |
//! | `/meridian/v1/clusters/{c}/table_names/{catalog}/{schema}/{table}` | table id | DDL: create table (CAS absent, with the table) | DDL: drop table |
//! | `/meridian/v1/clusters/{c}/revisions/shards/{shard:010}` | the shard's version (decimal) | with every write of the shard, same transaction | with the shard |
//! | `/meridian/v1/clusters/{c}/revisions/tables/{table:020}` | the table's revision (decimal) | with every write of the table, same transaction | with the table |
//! | `/meridian/v1/clusters/{c}/procedures/create_shards/{0:020}` | the shard count (decimal) | first shard creation on a store that takes fewer writes per transaction than the shards need (etcd), before the first chunk | with the last chunk |
//! | `/meridian/v1/clusters/{c}/procedures/create_table/{table:020}` | `Table` JSON (the create in flight) | DDL: before nodes are told to create | with the table's commit, or once a rollback dropped it from the nodes |
//! | `/meridian/v1/clusters/{c}/procedures/drop_table/{table:020}` | drop record JSON | DDL: in the drop's commit | once every node dropped the partitions |
//! | `/meridian/v1/clusters/{c}/procedures/rename_table/{table:020}` | rename record JSON | DDL: before the rename commits | in the rename's commit, or at the next start (rolled back) |
//! | `/meridian/v1/clusters/{c}/procedures/split/{new shard:020}` | reshard record JSON | a split, before nodes open the new shard | once the source's nodes dropped the moved partitions, or the rollback closed the new shard |
//! | `/meridian/v1/clusters/{c}/procedures/merge/{source shard:020}` | reshard record JSON | a merge, before nodes open the moved partitions | once the source's nodes closed it, or the rollback dropped the partitions from the target |
//! | `/meridian/v1/clusters/{c}/procedures/move/{shard:020}` | move record JSON (the operator and the shard before its started step) | scheduling: in the transaction of each step of a multi-step operator (replica moves, transfers) that leaves a step to come | in the transaction of its last step, or when it fails or is cancelled (else: resumed at the next start) |
//! | `/meridian/v1/clusters/{c}/node_kv/{namespace}/{key}` | the value (raw bytes; `{key}` is the client's key, raw bytes, may hold `/`) | `KvService` Put / CompareAndSwap (CAS on the previous value) | `KvService` Delete / CompareAndSwap, or the cluster is dropped |
//! | `/meridian/v1/clusters/{c}/elections/{name}`         | election record JSON: `{"term", "leader": {"candidate", "value", "ttl_ms"} or null}` (lease deadlines live in the serving server's memory) | `ElectionService` Campaign (a new term, or a new value/ttl), Resign (CAS on the previous record) | the cluster is dropped (kept after a resignation: the term never goes back) |
//!
//! Compare-and-swap transactions on shards and tables compare their revision keys, never
//! the encoded record: a record written by a binary that knows more fields still swaps.
//!
//! Deleting a whole cluster is one range of deletes under [`cluster_prefix`] plus its
//! [`cluster_name`] key.

use crate::{Result, StoreError};
use meridian_model::{ClusterId, NodeId, ShardId, TableId, TableName};

/// The root of every key.
pub const ROOT: &str = "/meridian/v1/";

/// The stored layout's format version ([`crate::format`]).
pub fn format() -> Vec<u8> {
    format!("{ROOT}format").into_bytes()
}

/// The election key (etcd only): held by the leading server under its etcd lease; its
/// create revision is the leader's term.
pub fn election() -> Vec<u8> {
    format!("{ROOT}election/leader").into_bytes()
}

/// The cluster id sequence.
pub fn cluster_id_sequence() -> Vec<u8> {
    format!("{ROOT}id/cluster").into_bytes()
}

/// Name -> id of a cluster.
pub fn cluster_name(name: &str) -> Vec<u8> {
    format!("{ROOT}cluster_names/{name}").into_bytes()
}

/// Event `seq` of the event log (one log per metadata store, every cluster's events).
pub fn event(seq: u64) -> Vec<u8> {
    format!("{ROOT}events/{seq:020}").into_bytes()
}

/// Every event of the event log.
pub fn events_prefix() -> Vec<u8> {
    format!("{ROOT}events/").into_bytes()
}

/// Every cluster name key.
pub fn cluster_names_prefix() -> Vec<u8> {
    format!("{ROOT}cluster_names/").into_bytes()
}

/// Every key of every cluster.
pub fn clusters_prefix() -> Vec<u8> {
    format!("{ROOT}clusters/").into_bytes()
}

/// Every key of one cluster.
pub fn cluster_prefix(cluster: ClusterId) -> Vec<u8> {
    format!("{ROOT}clusters/{:010}/", cluster.get()).into_bytes()
}

fn in_cluster(cluster: ClusterId, rest: std::fmt::Arguments<'_>) -> Vec<u8> {
    format!("{ROOT}clusters/{:010}/{rest}", cluster.get()).into_bytes()
}

/// A cluster's `ClusterConfig`.
pub fn cluster_config(cluster: ClusterId) -> Vec<u8> {
    in_cluster(cluster, format_args!("config"))
}

/// A cluster's node id sequence.
pub fn node_id_sequence(cluster: ClusterId) -> Vec<u8> {
    in_cluster(cluster, format_args!("id/node"))
}

/// A cluster's table id sequence.
pub fn table_id_sequence(cluster: ClusterId) -> Vec<u8> {
    in_cluster(cluster, format_args!("id/table"))
}

/// The highest shard id a split ever created, so a deleted (merged) shard's id is never
/// reused: nodes may still hold versions of it.
pub fn shard_id_high_water(cluster: ClusterId) -> Vec<u8> {
    in_cluster(cluster, format_args!("id/shard"))
}

/// One node.
pub fn node(cluster: ClusterId, node: NodeId) -> Vec<u8> {
    in_cluster(cluster, format_args!("nodes/{:020}", node.get()))
}

/// Every node of a cluster.
pub fn nodes_prefix(cluster: ClusterId) -> Vec<u8> {
    in_cluster(cluster, format_args!("nodes/"))
}

/// Name -> id of a node.
pub fn node_name(cluster: ClusterId, name: &str) -> Vec<u8> {
    in_cluster(cluster, format_args!("node_names/{name}"))
}

/// Every node name of a cluster.
pub fn node_names_prefix(cluster: ClusterId) -> Vec<u8> {
    in_cluster(cluster, format_args!("node_names/"))
}

/// One shard.
pub fn shard(cluster: ClusterId, shard: ShardId) -> Vec<u8> {
    in_cluster(cluster, format_args!("shards/{:010}", shard.get()))
}

/// Every shard of a cluster.
pub fn shards_prefix(cluster: ClusterId) -> Vec<u8> {
    in_cluster(cluster, format_args!("shards/"))
}

/// A cluster's scheduler switches (maintenance mode, paused schedulers): set by admins,
/// kept across restarts and changes of Meridian leader.
pub fn scheduler_switches(cluster: ClusterId) -> Vec<u8> {
    in_cluster(cluster, format_args!("scheduler_switches"))
}

/// A cluster's runtime settings overrides (`ctl config set`): kept across restarts and
/// changes of Meridian leader.
pub fn runtime_settings(cluster: ClusterId) -> Vec<u8> {
    in_cluster(cluster, format_args!("runtime_settings"))
}

/// The copyset family of a cluster in copyset placement mode: the only replica sets its
/// shards may use.
pub fn copysets(cluster: ClusterId) -> Vec<u8> {
    in_cluster(cluster, format_args!("copysets"))
}

/// One catalog.
pub fn catalog(cluster: ClusterId, catalog: &str) -> Vec<u8> {
    in_cluster(cluster, format_args!("catalogs/{catalog}"))
}

/// Every catalog of a cluster.
pub fn catalogs_prefix(cluster: ClusterId) -> Vec<u8> {
    in_cluster(cluster, format_args!("catalogs/"))
}

/// One schema.
pub fn schema(cluster: ClusterId, catalog: &str, schema: &str) -> Vec<u8> {
    in_cluster(cluster, format_args!("schemas/{catalog}/{schema}"))
}

/// Every schema of one catalog.
pub fn schemas_prefix(cluster: ClusterId, catalog: &str) -> Vec<u8> {
    in_cluster(cluster, format_args!("schemas/{catalog}/"))
}

/// One table.
pub fn table(cluster: ClusterId, table: TableId) -> Vec<u8> {
    in_cluster(cluster, format_args!("tables/{:020}", table.get()))
}

/// Every table of a cluster, by id.
pub fn tables_prefix(cluster: ClusterId) -> Vec<u8> {
    in_cluster(cluster, format_args!("tables/"))
}

/// Qualified name -> id of a table.
pub fn table_name(cluster: ClusterId, name: &TableName) -> Vec<u8> {
    let TableName {
        catalog,
        schema,
        table,
    } = name;
    in_cluster(
        cluster,
        format_args!("table_names/{catalog}/{schema}/{table}"),
    )
}

/// A create-table procedure in flight: written before any node creates the table, removed
/// when the table commits or once the create was rolled back on the nodes.
pub fn create_table_procedure(cluster: ClusterId, table: TableId) -> Vec<u8> {
    in_cluster(
        cluster,
        format_args!("procedures/create_table/{:020}", table.get()),
    )
}

/// The version of a shard, as compared by transactions that replace or delete it.
pub fn shard_version(cluster: ClusterId, shard: ShardId) -> Vec<u8> {
    in_cluster(
        cluster,
        format_args!("revisions/shards/{:010}", shard.get()),
    )
}

/// Every shard version key of a cluster.
pub fn shard_versions_prefix(cluster: ClusterId) -> Vec<u8> {
    in_cluster(cluster, format_args!("revisions/shards/"))
}

/// Every table revision key of a cluster.
pub fn table_revisions_prefix(cluster: ClusterId) -> Vec<u8> {
    in_cluster(cluster, format_args!("revisions/tables/"))
}

/// The revision of a table, as compared by transactions that replace or delete it.
pub fn table_revision(cluster: ClusterId, table: TableId) -> Vec<u8> {
    in_cluster(
        cluster,
        format_args!("revisions/tables/{:020}", table.get()),
    )
}

/// A procedure of `kind` (`drop_table`, `rename_table`, `split`, `merge`, `move`) in flight, by the
/// id of what it works on.
pub fn procedure(cluster: ClusterId, kind: &str, id: u64) -> Vec<u8> {
    in_cluster(cluster, format_args!("procedures/{kind}/{id:020}"))
}

/// Every procedure of `kind` in flight of a cluster.
pub fn procedures_prefix(cluster: ClusterId, kind: &str) -> Vec<u8> {
    in_cluster(cluster, format_args!("procedures/{kind}/"))
}

/// Every create-table procedure in flight of a cluster.
pub fn create_table_procedures_prefix(cluster: ClusterId) -> Vec<u8> {
    in_cluster(cluster, format_args!("procedures/create_table/"))
}

/// Every table name of one schema.
pub fn table_names_prefix(cluster: ClusterId, catalog: &str, schema: &str) -> Vec<u8> {
    in_cluster(cluster, format_args!("table_names/{catalog}/{schema}/"))
}

/// One key of a node KV namespace (`KvService`). `namespace` is a validated name (no `/`);
/// `key` is the client's bytes, appended as they are: a key may hold `/`, and a prefix scan
/// of [`node_kv_prefix`] plus a key prefix lists exactly the keys with that prefix.
pub fn node_kv(cluster: ClusterId, namespace: &str, key: &[u8]) -> Vec<u8> {
    let mut k = node_kv_prefix(cluster, namespace);
    k.extend_from_slice(key);
    k
}

/// Every key of one node KV namespace.
pub fn node_kv_prefix(cluster: ClusterId, namespace: &str) -> Vec<u8> {
    in_cluster(cluster, format_args!("node_kv/{namespace}/"))
}

/// The client's key of a [`node_kv`] key of `namespace`.
pub fn parse_node_kv<'k>(cluster: ClusterId, namespace: &str, key: &'k [u8]) -> Option<&'k [u8]> {
    key.strip_prefix(node_kv_prefix(cluster, namespace).as_slice())
}

/// One election of database nodes (`ElectionService`), by its validated name. Not
/// Meridian's own election ([`election`]).
pub fn node_election(cluster: ClusterId, name: &str) -> Vec<u8> {
    in_cluster(cluster, format_args!("elections/{name}"))
}

/// The last `/`-separated segment of `key` if `key` starts with `prefix`.
fn last_segment<'k>(key: &'k [u8], prefix: &[u8]) -> Option<&'k str> {
    let rest = std::str::from_utf8(key.strip_prefix(prefix)?).ok()?;
    (!rest.is_empty() && !rest.contains('/')).then_some(rest)
}

/// The cluster id of any key under [`clusters_prefix`].
pub fn parse_cluster_id(key: &[u8]) -> Option<ClusterId> {
    let rest = key.strip_prefix(clusters_prefix().as_slice())?;
    let digits = std::str::from_utf8(rest.get(..10)?).ok()?;
    digits.parse().ok().map(ClusterId)
}

/// The cluster name of a [`cluster_name`] key.
pub fn parse_cluster_name(key: &[u8]) -> Option<&str> {
    last_segment(key, &cluster_names_prefix())
}

/// The node id of a [`node`] key of `cluster`.
pub fn parse_node(cluster: ClusterId, key: &[u8]) -> Option<NodeId> {
    last_segment(key, &nodes_prefix(cluster))?
        .parse()
        .ok()
        .map(NodeId)
}

/// The shard id of a [`shard`] key of `cluster`.
pub fn parse_shard(cluster: ClusterId, key: &[u8]) -> Option<ShardId> {
    last_segment(key, &shards_prefix(cluster))?
        .parse()
        .ok()
        .map(ShardId)
}

/// The table id of a [`table`] key of `cluster`.
pub fn parse_table(cluster: ClusterId, key: &[u8]) -> Option<TableId> {
    last_segment(key, &tables_prefix(cluster))?
        .parse()
        .ok()
        .map(TableId)
}

/// An id as stored in a value (decimal ASCII).
pub fn encode_id(id: u64) -> Vec<u8> {
    id.to_string().into_bytes()
}

/// An id stored by [`encode_id`].
pub fn decode_id(value: &[u8]) -> Result<u64> {
    std::str::from_utf8(value)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| StoreError::Corrupt(format!("id value {value:?} is not a decimal u64")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_padded_so_lexical_order_is_numeric_order() {
        let c = ClusterId(7);
        assert_eq!(
            node(c, NodeId(42)),
            b"/meridian/v1/clusters/0000000007/nodes/00000000000000000042".to_vec()
        );
        assert!(table(c, TableId(9)) < table(c, TableId(10)));
        assert!(shard(c, ShardId(99)) < shard(c, ShardId(100)));
        assert!(node(c, NodeId(u64::MAX)).starts_with(&nodes_prefix(c)));
        assert!(cluster_prefix(ClusterId(u32::MAX)).starts_with(&clusters_prefix()));
    }

    #[test]
    fn parsers_invert_builders() {
        let c = ClusterId(3);
        assert_eq!(parse_node(c, &node(c, NodeId(5))), Some(NodeId(5)));
        assert_eq!(parse_shard(c, &shard(c, ShardId(8))), Some(ShardId(8)));
        assert_eq!(parse_table(c, &table(c, TableId(13))), Some(TableId(13)));
        assert_eq!(parse_cluster_id(&cluster_config(c)), Some(c));
        assert_eq!(parse_cluster_name(&cluster_name("prod")), Some("prod"));
        assert_eq!(parse_node(ClusterId(4), &node(c, NodeId(5))), None);
        assert_eq!(decode_id(&encode_id(77)).unwrap(), 77);
        assert!(decode_id(b"x").is_err());
    }

    #[test]
    fn collections_do_not_overlap() {
        let c = ClusterId(1);
        let name = TableName::new("greptime", "public", "t").unwrap();
        assert!(!table_name(c, &name).starts_with(&tables_prefix(c)));
        assert!(table_name(c, &name).starts_with(&table_names_prefix(c, "greptime", "public")));
        assert!(!schema(c, "ab", "s").starts_with(&schemas_prefix(c, "a")));
        assert!(!node_name(c, "n").starts_with(&nodes_prefix(c)));
        assert!(!cluster_prefix(ClusterId(1)).starts_with(&cluster_prefix(ClusterId(10))));
        assert!(!node_kv(c, "ab", b"k").starts_with(&node_kv_prefix(c, "a")));
        assert!(node_kv(c, "a", b"x/y").starts_with(&node_kv_prefix(c, "a")));
        assert_eq!(
            parse_node_kv(c, "a", &node_kv(c, "a", b"x/y")),
            Some(&b"x/y"[..])
        );
        assert!(node_election(c, "e").starts_with(&cluster_prefix(c)));
        assert!(!node_election(c, "e").starts_with(&node_kv_prefix(c, "e")));
        assert!(copysets(c).starts_with(&cluster_prefix(c)));
        assert!(!copysets(c).starts_with(&shards_prefix(c)));
    }
}
