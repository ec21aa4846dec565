//! Placement: where new shards, new tables and replacement replicas go.
//!
//! Initial placement runs once, when a cluster first reaches `min_nodes`: every shard gets a
//! leader and RF-1 followers on distinct nodes, spread across failure domains at the
//! configured isolation level, with replica and leader counts per node within one of each
//! other whenever the domains allow it. With too few domains it places anyway and says so
//! in a [`DomainWarning`]: degradation is open, never silent (invariant 4).

use crate::copyset::{self, CopysetFamily};
use crate::domain::{self, IsolationDomains};
use crate::error::SchedulerError;
use crate::view::{ClusterView, NodeView, Tally};
use meridian_model::{
    ClusterConfig, IsolationLevel, NodeId, PlacementMode, Replica, ReplicaRole, Shard, ShardId,
    ShardVersion,
};
use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

/// The version a freshly placed shard starts at.
pub const INITIAL_VERSION: ShardVersion = ShardVersion(1);

/// Placement had to put replicas of one shard in a shared failure domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainWarning {
    /// The isolation level asked for.
    pub level: IsolationLevel,
    /// Distinct domains among schedulable nodes.
    pub domains: usize,
    /// Replicas per shard.
    pub replication_factor: u32,
    /// Human-readable explanation.
    pub message: String,
}

/// The result of initial placement.
#[derive(Debug, Clone, PartialEq)]
pub struct Placement {
    /// One shard per requested id, at [`INITIAL_VERSION`], leader first.
    pub shards: Vec<Shard>,
    /// Why the placement is weaker than asked, if it is.
    pub warnings: Vec<DomainWarning>,
    /// The copyset family used, in copyset mode (persist it: later repairs reuse it).
    pub copysets: Option<CopysetFamily>,
}

/// Places `shard_ids` on the schedulable nodes among `nodes`, per `config` (replication
/// factor, isolation level, spread or copyset mode). Deterministic for a given `seed`.
pub fn place_shards(
    nodes: &[NodeView],
    shard_ids: &[ShardId],
    config: &ClusterConfig,
    seed: u64,
) -> Result<Placement, SchedulerError> {
    let rf = config.replication_factor.max(1) as usize;
    let mut cands: Vec<&NodeView> = nodes.iter().filter(|n| n.can_receive()).collect();
    cands.sort_by_key(|n| n.id);
    if cands.len() < rf {
        return Err(SchedulerError::NotEnoughNodes {
            need: rf,
            have: cands.len(),
        });
    }
    let mut domains = IsolationDomains::new(config.isolation);
    let dom: Vec<usize> = cands
        .iter()
        .map(|n| domains.intern(&n.labels, n.id))
        .collect();
    let mut warnings = Vec::new();
    if domains.len() < rf {
        warnings.push(DomainWarning {
            level: config.isolation,
            domains: domains.len(),
            replication_factor: rf as u32,
            message: format!(
                "only {} distinct {:?} domain(s) among {} schedulable nodes for replication \
                 factor {rf}: some replicas of a shard share a failure domain",
                domains.len(),
                config.isolation,
                cands.len()
            ),
        });
    }
    let mut rng = SmallRng::seed_from_u64(seed);
    let (sets, copysets) = match config.placement {
        PlacementMode::Spread => (spread_sets(&dom, shard_ids.len(), rf, &mut rng), None),
        PlacementMode::Copyset { scatter_width } => {
            let family = copyset::build_family(&dom, rf, scatter_width, &mut rng);
            let sets = copyset::assign(&family, shard_ids.len());
            let ids = family
                .iter()
                .map(|s| s.iter().map(|&i| cands[i].id).collect())
                .collect();
            (sets, Some(CopysetFamily::new(ids, scatter_width)))
        }
    };
    let leaders = choose_leaders(&sets, cands.len());
    let shards = shard_ids
        .iter()
        .zip(sets.iter().zip(leaders))
        .map(|(&id, (set, leader))| {
            let mut replicas: Vec<Replica> = set
                .iter()
                .map(|&i| Replica {
                    node: cands[i].id,
                    role: if i == leader {
                        ReplicaRole::Leader
                    } else {
                        ReplicaRole::Follower
                    },
                })
                .collect();
            replicas.sort_by_key(|r| r.role != ReplicaRole::Leader);
            Shard {
                id,
                version: INITIAL_VERSION,
                replicas,
            }
        })
        .collect();
    Ok(Placement {
        shards,
        warnings,
        copysets,
    })
}

/// Placement of one new shard beside the existing ones (a split's).
///
/// In copyset mode it goes into the copyset of the family whose nodes can all receive it
/// and hold the fewest replicas, so the new shard is a member from the start rather than a
/// stray for `CopysetFix` to move later; without such a copyset (no family yet, or a member
/// of each is cordoned or down) it is spread as at first placement, and repair takes it
/// from there. Its leader is the member with the fewest leaders, other than `avoid` (the
/// source's leader, so the two halves' writes land on different nodes) whenever another
/// member can lead. In spread mode, `avoid` gets no replica at all when enough other nodes
/// can take them. Deterministic for a given `seed`.
pub fn place_new_shard(
    view: &ClusterView,
    id: ShardId,
    avoid: Option<NodeId>,
    seed: u64,
) -> Result<Shard, SchedulerError> {
    let rf = view.config().replication_factor.max(1) as usize;
    if let Some(set) = view.copysets().and_then(|family| {
        family
            .sets()
            .iter()
            .filter(|set| {
                set.len() == rf
                    && set
                        .iter()
                        .all(|n| view.node(*n).is_some_and(NodeView::can_receive))
            })
            .min_by_key(|set| {
                let held: u32 = set.iter().map(|n| view.replica_count(*n)).sum();
                (held, set.to_vec())
            })
    }) {
        let leader = set
            .iter()
            .copied()
            .min_by_key(|n| {
                let can_lead = view.node(*n).is_some_and(NodeView::can_lead);
                (Some(*n) == avoid, !can_lead, view.leader_count(*n), *n)
            })
            .unwrap_or(set[0]);
        let mut replicas: Vec<Replica> = set
            .iter()
            .map(|&node| Replica {
                node,
                role: if node == leader {
                    ReplicaRole::Leader
                } else {
                    ReplicaRole::Follower
                },
            })
            .collect();
        replicas.sort_by_key(|r| r.role != ReplicaRole::Leader);
        return Ok(Shard {
            id,
            version: INITIAL_VERSION,
            replicas,
        });
    }
    let mut nodes = view.nodes().to_vec();
    if let Some(avoid) = avoid {
        let others = nodes
            .iter()
            .filter(|n| n.can_receive() && n.id != avoid)
            .count();
        if others >= rf {
            for n in nodes.iter_mut().filter(|n| n.id == avoid) {
                n.cordoned = true;
            }
        }
    }
    let mut config = view.config().clone();
    config.placement = PlacementMode::Spread;
    let placement = place_shards(&nodes, &[id], &config, seed)?;
    placement
        .shards
        .into_iter()
        .next()
        .ok_or(SchedulerError::NotEnoughNodes { need: rf, have: 0 })
}

/// Replica sets (indices into the candidates) for `count` shards: each replica goes to the
/// node with the fewest replicas so far among those in a domain the shard does not use yet
/// (reusing the least-used domain only when all are taken). Ties are broken by a fresh
/// shuffle per shard so equal nodes share the work.
fn spread_sets(dom: &[usize], count: usize, rf: usize, rng: &mut SmallRng) -> Vec<Vec<usize>> {
    let n = dom.len();
    let mut replicas = vec![0u32; n];
    let mut order: Vec<usize> = (0..n).collect();
    let mut sets = Vec::with_capacity(count);
    for _ in 0..count {
        order.shuffle(rng);
        let mut set: Vec<usize> = Vec::with_capacity(rf);
        for _ in 0..rf {
            let pick = order
                .iter()
                .copied()
                .filter(|c| !set.contains(c))
                .min_by_key(|&c| {
                    let reuse = set.iter().filter(|&&s| dom[s] == dom[c]).count();
                    (reuse, replicas[c])
                });
            if let Some(c) = pick {
                replicas[c] += 1;
                set.push(c);
            }
        }
        sets.push(set);
    }
    sets
}

/// Picks a leader in every set so leader counts per node end within one of each other
/// wherever the sets allow it: greedy (fewest leaders first), then single transfers from a
/// node to a replica holder with at least two fewer, then chains of transfers (shortest
/// augmenting paths: `a` hands a shard to `b`, `b` another to `c`, ...) for what single
/// transfers cannot reach, as when copysets or zones keep two nodes from sharing a shard.
fn choose_leaders(sets: &[Vec<usize>], n: usize) -> Vec<usize> {
    let mut leaders = vec![0u32; n];
    let mut chosen: Vec<usize> = sets
        .iter()
        .map(|set| {
            let pick = set.iter().copied().min_by_key(|&c| leaders[c]).unwrap_or(0);
            leaders[pick] += 1;
            pick
        })
        .collect();
    // Every transfer lowers the sum of squared counts, so both loops end.
    loop {
        let mut moved = false;
        for (s, set) in sets.iter().enumerate() {
            let cur = chosen[s];
            let best = set.iter().copied().min_by_key(|&c| leaders[c]);
            if let Some(c) = best.filter(|&c| leaders[c] + 2 <= leaders[cur]) {
                leaders[cur] -= 1;
                leaders[c] += 1;
                chosen[s] = c;
                moved = true;
            }
        }
        if !moved {
            break;
        }
    }
    let mut led_by: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (s, &c) in chosen.iter().enumerate() {
        if !sets[s].is_empty() {
            led_by[c].push(s);
        }
    }
    while let Some((end, path)) = augmenting_path(sets, &leaders, &led_by) {
        let start = path.last().map_or(end, |&(from, _)| from);
        let mut at = end;
        for (from, s) in path {
            chosen[s] = at;
            led_by[from].retain(|&x| x != s);
            led_by[at].push(s);
            at = from;
        }
        leaders[start] -= 1;
        leaders[end] += 1;
    }
    chosen
}

/// A shortest chain of leader transfers from a node with the most leaders to a node with
/// at least two fewer: the end node and the hops `(giver, shard)` walking back to the start.
fn augmenting_path(
    sets: &[Vec<usize>],
    leaders: &[u32],
    led_by: &[Vec<usize>],
) -> Option<(usize, Vec<(usize, usize)>)> {
    let max = leaders.iter().copied().max()?;
    let mut parent: Vec<Option<(usize, usize)>> = vec![None; leaders.len()];
    let mut seen = vec![false; leaders.len()];
    let mut queue = std::collections::VecDeque::new();
    for (i, &l) in leaders.iter().enumerate() {
        if l == max {
            seen[i] = true;
            queue.push_back(i);
        }
    }
    while let Some(u) = queue.pop_front() {
        for &s in &led_by[u] {
            for &v in &sets[s] {
                if seen[v] {
                    continue;
                }
                seen[v] = true;
                parent[v] = Some((u, s));
                if leaders[v] + 2 <= max {
                    let mut path = Vec::new();
                    let mut at = v;
                    while let Some((from, s)) = parent[at] {
                        path.push((from, s));
                        at = from;
                    }
                    return Some((v, path));
                }
                queue.push_back(v);
            }
        }
    }
    None
}

/// The shard a new table should go to: fewest tables, then least read/write load, then
/// lowest id. Shards whose leader is not Online are skipped: the table could not be created
/// there now.
pub fn pick_shard_for_table(view: &ClusterView) -> Option<ShardId> {
    view.shards()
        .iter()
        .filter(|s| {
            s.shard
                .leader()
                .and_then(|l| view.node(l))
                .is_some_and(|n| n.state == meridian_model::NodeState::Online)
        })
        .min_by(|a, b| {
            a.table_count
                .cmp(&b.table_count)
                .then(a.load().total_cmp(&b.load()))
                .then(a.shard.id.cmp(&b.shard.id))
        })
        .map(|s| s.shard.id)
}

/// A node to receive a new replica of `shard` (for repair or a move), or `None`.
///
/// Candidates can receive (Online, not cordoned, not draining), hold no replica of the shard
/// and are not in `exclude` (the replicas being replaced). If any candidate's domain is not
/// used by the shard's remaining replicas, only such candidates qualify; failing that, any
/// candidate (the violation is then visible in `ClusterView::domain_violations`). Among
/// them: fewest replicas, then least load, then lowest id.
pub fn pick_replica_target(
    view: &ClusterView,
    shard: &Shard,
    exclude: &[NodeId],
) -> Option<NodeId> {
    let tally = view.tally();
    choose_target(view, &tally, shard, exclude, DomainRule::Prefer).map(|i| view.nodes()[i].id)
}

/// How strictly a target must respect failure domains.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DomainRule {
    /// Never raise the shard's violation count (balance, drain, hot-spot moves).
    Strict,
    /// Prefer a free domain, accept any (repair: a replica beats no replica).
    Prefer,
}

/// Violations of `shard` before and after replacing `remove` (if any) by `add`.
pub(crate) fn violations_around(
    view: &ClusterView,
    shard: &Shard,
    remove: &[NodeId],
    add: NodeId,
) -> (u32, u32) {
    let avail = view.available_domains();
    let before = domain::violations_of(
        shard.replicas.iter().filter_map(|r| view.domain_of(r.node)),
        avail,
    );
    let after = domain::violations_of(
        shard
            .replicas
            .iter()
            .filter(|r| !remove.contains(&r.node))
            .filter_map(|r| view.domain_of(r.node))
            .chain(view.domain_of(add)),
        avail,
    );
    (before, after)
}

/// The best receiving node (as a view index) for a new replica of `shard`, see
/// [`pick_replica_target`]; also skips nodes at their operator limit in `tally`.
pub(crate) fn choose_target(
    view: &ClusterView,
    tally: &Tally,
    shard: &Shard,
    exclude: &[NodeId],
    rule: DomainRule,
) -> Option<usize> {
    choose_target_among(view, tally, shard, exclude, rule, NodeView::can_receive)
}

/// [`choose_target`] for a replica that will lead at once (a moved leader replica, a
/// reopened shard): only nodes that [can lead](NodeView::can_lead) qualify.
pub(crate) fn choose_leader_target(
    view: &ClusterView,
    tally: &Tally,
    shard: &Shard,
    exclude: &[NodeId],
    rule: DomainRule,
) -> Option<usize> {
    choose_target_among(view, tally, shard, exclude, rule, NodeView::can_lead)
}

fn choose_target_among(
    view: &ClusterView,
    tally: &Tally,
    shard: &Shard,
    exclude: &[NodeId],
    rule: DomainRule,
    may_take: fn(&NodeView) -> bool,
) -> Option<usize> {
    if view.copysets().is_some() {
        match choose_in_copysets(view, tally, shard, exclude, rule, may_take) {
            CopysetChoice::Found(i) => return Some(i),
            CopysetChoice::Wait => return None,
            CopysetChoice::NoFit if rule == DomainRule::Strict => return None,
            // Degrade openly: a replica beats no replica; the shard counts in
            // `ClusterView::copyset_violations` until repair moves it back into a copyset.
            CopysetChoice::NoFit => {}
        }
    }
    let doms = view.domains_by_index();
    let used: Vec<usize> = shard
        .replicas
        .iter()
        .filter(|r| !exclude.contains(&r.node))
        .filter_map(|r| view.domain_of(r.node))
        .collect();
    let eligible = |i: usize| {
        let n = &view.nodes()[i];
        may_take(n) && !shard.has_replica_on(n.id) && !exclude.contains(&n.id)
    };
    // If some node in a free domain could take the replica, only such nodes qualify, even
    // when all of them are at their operator limit right now: better to wait a tick than
    // to place the replica in a shared domain and move it again later.
    let free_domain_exists =
        (0..view.nodes().len()).any(|i| eligible(i) && !used.contains(&doms[i]));
    view.nodes()
        .iter()
        .enumerate()
        .filter(|(i, _)| eligible(*i) && tally.has_capacity(*i))
        .filter(|(i, _)| !free_domain_exists || !used.contains(&doms[*i]))
        .filter(|(_, n)| {
            rule == DomainRule::Prefer || {
                let (before, after) = violations_around(view, shard, exclude, n.id);
                after <= before
            }
        })
        .min_by(|(a, na), (b, nb)| {
            tally.replicas[*a]
                .cmp(&tally.replicas[*b])
                .then(tally.load[*a].total_cmp(&tally.load[*b]))
                .then(na.id.cmp(&nb.id))
        })
        .map(|(i, _)| i)
}

/// How a copyset target ranks (smaller is better): most kept replicas in its copyset,
/// then fewest domain violations after, fewest replicas, least load, lowest id.
type TargetRank = (std::cmp::Reverse<usize>, u32, u32, u64, NodeId);

/// The outcome of looking for a target inside the copyset family.
enum CopysetChoice {
    /// A node (view index) that puts the shard in, or one step closer to, a copyset.
    Found(usize),
    /// Fitting nodes exist but are at their operator limit: wait a tick.
    Wait,
    /// No copyset shares a member with the shard and has a node that could take it.
    NoFit,
}

/// A target for a new replica of `shard` in copyset mode (replacing `exclude`).
///
/// Candidates are members of copysets that hold at least one kept replica. The best
/// copyset holds the most kept replicas: all of them means the new set *is* inside it;
/// fewer means the shard is moving to that copyset step by step (a later repair swaps the
/// rest, see `copyset_fix`). Then: fewest domain violations after, fewest replicas, least
/// load, lowest id. [`DomainRule::Strict`] accepts only a set inside a copyset that does not
/// raise the shard's domain violations. With no kept replica (a shard reopened from
/// storage), every copyset qualifies.
fn choose_in_copysets(
    view: &ClusterView,
    tally: &Tally,
    shard: &Shard,
    exclude: &[NodeId],
    rule: DomainRule,
    may_take: fn(&NodeView) -> bool,
) -> CopysetChoice {
    let kept: Vec<NodeId> = shard
        .replicas
        .iter()
        .map(|r| r.node)
        .filter(|n| !exclude.contains(n))
        .collect();
    let family = match view.copysets() {
        Some(f) => f.clone(),
        None => return CopysetChoice::NoFit,
    };
    let candidate_sets: Vec<&[NodeId]> = if kept.is_empty() {
        family.sets().iter().map(Vec::as_slice).collect()
    } else {
        let mut v: Vec<&[NodeId]> = kept.iter().flat_map(|&k| view.copysets_with(k)).collect();
        v.sort_unstable();
        v.dedup();
        v
    };
    let before = domain::violations_of(
        shard.replicas.iter().filter_map(|r| view.domain_of(r.node)),
        view.available_domains(),
    );
    let mut best: Option<(TargetRank, usize)> = None;
    // The most kept replicas a copyset holds whose fitting nodes are all at their limit.
    let mut waiting: Option<usize> = None;
    for set in candidate_sets {
        let overlap = kept.iter().filter(|n| set.contains(n)).count();
        if rule == DomainRule::Strict && overlap < kept.len() {
            continue;
        }
        for &n in set.iter().filter(|n| !kept.contains(n)) {
            let Some(i) = view.node_index(n) else {
                continue;
            };
            let node = &view.nodes()[i];
            if !may_take(node) || shard.has_replica_on(n) || exclude.contains(&n) {
                continue;
            }
            if !tally.has_capacity(i) {
                waiting = waiting.max(Some(overlap));
                continue;
            }
            let (_, after) = violations_around(view, shard, exclude, n);
            if rule == DomainRule::Strict && after > before {
                continue;
            }
            let key = (
                std::cmp::Reverse(overlap),
                after,
                tally.replicas[i],
                tally.load[i].max(0.0).to_bits(),
                n,
            );
            if best.as_ref().is_none_or(|(k, _)| key < *k) {
                best = Some((key, i));
            }
        }
    }
    // Better to wait a tick for a node of a closer copyset than to take a worse one now.
    match (best, waiting) {
        (Some(((std::cmp::Reverse(o), ..), _)), Some(w)) if w > o => CopysetChoice::Wait,
        (Some((_, i)), _) => CopysetChoice::Found(i),
        (None, Some(_)) => CopysetChoice::Wait,
        (None, None) => CopysetChoice::NoFit,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{node_view, ClusterBuilder};
    use meridian_model::NodeState;

    #[test]
    fn a_split_shard_lands_inside_a_copyset_led_away_from_the_source_leader() {
        let view = ClusterBuilder::new()
            .zones(3)
            .nodes(12)
            .shards(16)
            .copyset(4)
            .build();
        let family = view.copysets().unwrap().clone();
        let source = view.shards()[0].shard.clone();
        let avoid = source.leader();
        for seed in 0..8 {
            let new = place_new_shard(&view, ShardId(100), avoid, seed).unwrap();
            let nodes: Vec<NodeId> = new.replicas.iter().map(|r| r.node).collect();
            assert!(view.inside_copyset(&nodes), "{nodes:?} in {family:?}");
            assert_eq!(new.version, INITIAL_VERSION);
            assert_ne!(new.leader(), avoid);
            assert_eq!(new.replicas.len(), 3);
        }
        // Spread mode keeps the source leader's node out when others can take the shard.
        let view = ClusterBuilder::new().zones(3).nodes(6).shards(6).build();
        let avoid = view.shards()[0].shard.leader();
        let new = place_new_shard(&view, ShardId(100), avoid, 1).unwrap();
        assert!(new.replicas.iter().all(|r| Some(r.node) != avoid));
    }

    fn counts(shards: &[Shard]) -> (u32, u32) {
        let mut reps = std::collections::BTreeMap::<NodeId, (u32, u32)>::new();
        for s in shards {
            for r in &s.replicas {
                let e = reps.entry(r.node).or_default();
                e.0 += 1;
                if r.role == ReplicaRole::Leader {
                    e.1 += 1;
                }
            }
        }
        let spread = |f: fn(&(u32, u32)) -> u32| {
            let v: Vec<u32> = reps.values().map(f).collect();
            v.iter().max().unwrap() - v.iter().min().unwrap()
        };
        (spread(|c| c.0), spread(|c| c.1))
    }

    fn config(rf: u32, isolation: IsolationLevel) -> ClusterConfig {
        ClusterConfig {
            replication_factor: rf,
            isolation,
            ..ClusterConfig::default_cluster()
        }
    }

    #[test]
    fn placement_is_even_for_replicas_and_leaders() {
        for (zones, nodes, shards) in [(3, 9, 24), (5, 10, 1000), (3, 30, 1000), (4, 7, 50)] {
            let ns: Vec<NodeView> = (1..=nodes).map(|i| node_view(i, zones)).collect();
            let ids: Vec<ShardId> = (0..shards).map(ShardId).collect();
            let p = place_shards(&ns, &ids, &config(3, IsolationLevel::Zone), 42).unwrap();
            assert!(p.warnings.is_empty());
            let (r, l) = counts(&p.shards);
            assert!(
                r <= 1 && l <= 1,
                "{zones} zones {nodes} nodes: spread {r}/{l}"
            );
            for s in &p.shards {
                s.check().unwrap();
                assert_eq!(s.replicas.len(), 3);
            }
        }
    }

    #[test]
    fn replicas_never_share_a_zone_when_three_zones_exist() {
        let view = ClusterBuilder::new().zones(3).nodes(9).shards(24).build();
        assert_eq!(view.domain_violations(), 0);
        for s in view.shards() {
            let mut zones: Vec<_> = s
                .shard
                .replicas
                .iter()
                .map(|r| view.node(r.node).unwrap().labels.zone.clone())
                .collect();
            zones.sort();
            zones.dedup();
            assert_eq!(zones.len(), 3, "{:?}", s.shard);
        }
    }

    #[test]
    fn placement_warns_when_too_few_zones() {
        let ns: Vec<NodeView> = (1..=6).map(|i| node_view(i, 2)).collect();
        let ids: Vec<ShardId> = (0..12).map(ShardId).collect();
        let p = place_shards(&ns, &ids, &config(3, IsolationLevel::Zone), 1).unwrap();
        assert_eq!(p.warnings.len(), 1);
        assert_eq!(p.warnings[0].domains, 2);
        // Placed anyway, on distinct nodes, using both zones.
        for s in &p.shards {
            s.check().unwrap();
            assert_eq!(s.replicas.len(), 3);
        }
    }

    #[test]
    fn copyset_mode_places_every_shard_on_a_copyset_evenly() {
        let ns: Vec<NodeView> = (1..=30).map(|i| node_view(i, 3)).collect();
        let ids: Vec<ShardId> = (0..120).map(ShardId).collect();
        let config = ClusterConfig {
            placement: PlacementMode::Copyset { scatter_width: 4 },
            ..config(3, IsolationLevel::Zone)
        };
        let p = place_shards(&ns, &ids, &config, 5).unwrap();
        let family = p.copysets.expect("copyset mode returns its family");
        assert_eq!(family.len(), 20);
        for s in &p.shards {
            let mut nodes: Vec<NodeId> = s.replicas.iter().map(|r| r.node).collect();
            nodes.sort();
            assert_eq!(family.containing(&nodes).count(), 1, "{s:?}");
        }
        // 120 shards over 20 copysets, two disjoint permutations: 12 replicas per node.
        let (r, l) = counts(&p.shards);
        assert_eq!(r, 0);
        assert!(l <= 1);
        let view = ClusterView::new(
            config,
            ns,
            p.shards.into_iter().map(crate::ShardView::new).collect(),
        );
        assert_eq!(view.domain_violations(), 0);
    }

    #[test]
    fn placement_refuses_fewer_nodes_than_replicas() {
        let ns: Vec<NodeView> = (1..=2).map(|i| node_view(i, 2)).collect();
        let err = place_shards(&ns, &[ShardId(0)], &config(3, IsolationLevel::Node), 1);
        assert_eq!(
            err,
            Err(SchedulerError::NotEnoughNodes { need: 3, have: 2 })
        );
    }

    #[test]
    fn new_table_goes_to_the_emptiest_shard_with_a_live_leader() {
        let view = ClusterBuilder::new()
            .zones(3)
            .nodes(3)
            .shards(3)
            .table_counts(&[0, 5, 2])
            .build();
        assert_eq!(pick_shard_for_table(&view), Some(ShardId(0)));
        let leader0 = view.shards()[0].shard.leader().unwrap();
        let (config, mut nodes, shards) = view.into_parts();
        for n in &mut nodes {
            if n.id == leader0 {
                n.state = NodeState::Offline;
            }
        }
        let view = ClusterView::new(config, nodes, shards);
        let pick = pick_shard_for_table(&view).unwrap();
        assert_ne!(view.shard(pick).unwrap().shard.leader(), Some(leader0));
    }

    #[test]
    fn replica_target_prefers_a_free_zone() {
        let view = ClusterBuilder::new().zones(3).nodes(6).shards(6).build();
        let s = view.shards()[0].shard.clone();
        let dead = s.followers().next().unwrap();
        let t = pick_replica_target(&view, &s, &[dead]).unwrap();
        assert_eq!(
            view.node(t).unwrap().labels.zone,
            view.node(dead).unwrap().labels.zone
        );
        assert!(!s.has_replica_on(t));
    }
}
