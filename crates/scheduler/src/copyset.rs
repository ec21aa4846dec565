//! Copyset placement (Cidon et al., "Copysets: Reducing the Frequency of Data Loss in Cloud
//! Storage", USENIX ATC 2013; also Curve's MDS) and a data-loss estimator.
//!
//! Random placement spreads every node's replicas over many partners, so when 1% of a large
//! cluster fails at once almost surely *some* shard had all its replicas among the failed
//! nodes. Copyset placement draws replica sets from a small family of node groups instead:
//! `P = ceil(S / (R - 1))` random permutations of the nodes, each chopped into groups of
//! `R`, so each node shares groups with about `S` (the scatter width) others. A shard is lost
//! only if a whole *copyset* fails, and there are far fewer copysets than random replica
//! sets. Permutations here interleave failure domains so groups span distinct domains.

use crate::domain::IsolationDomains;
use crate::view::NodeView;
use crate::SchedulerError;
use meridian_model::{IsolationLevel, NodeId};
use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};

/// A family of copysets: the only replica sets copyset placement uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CopysetFamily {
    sets: Vec<Vec<NodeId>>,
    scatter_width: u32,
}

impl CopysetFamily {
    /// A family from explicit sets (e.g. loaded from the store).
    pub fn new(sets: Vec<Vec<NodeId>>, scatter_width: u32) -> Self {
        Self {
            sets,
            scatter_width,
        }
    }

    /// The copysets, permutation by permutation.
    pub fn sets(&self) -> &[Vec<NodeId>] {
        &self.sets
    }

    /// Number of copysets.
    pub fn len(&self) -> usize {
        self.sets.len()
    }

    /// Whether the family is empty.
    pub fn is_empty(&self) -> bool {
        self.sets.is_empty()
    }

    /// The scatter width it was built for.
    pub fn scatter_width(&self) -> u32 {
        self.scatter_width
    }

    /// Copysets that contain every node of `nodes` (e.g. a shard's surviving replicas, to
    /// repair it inside a copyset).
    pub fn containing<'a>(&'a self, nodes: &'a [NodeId]) -> impl Iterator<Item = &'a [NodeId]> {
        self.sets
            .iter()
            .filter(move |s| nodes.iter().all(|n| s.contains(n)))
            .map(Vec::as_slice)
    }
}

impl CopysetFamily {
    /// The family of a cluster whose shards were placed in copysets but whose family was
    /// never stored (placed by an older binary): the distinct replica sets of its shards.
    pub fn from_replica_sets<'a>(
        sets: impl IntoIterator<Item = &'a [NodeId]>,
        scatter_width: u32,
    ) -> Self {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for set in sets {
            let mut key = set.to_vec();
            key.sort_unstable();
            if !key.is_empty() && seen.insert(key) {
                out.push(set.to_vec());
            }
        }
        Self::new(out, scatter_width)
    }

    /// Whether some copyset holds every node of `nodes` (a shard's replica set is "inside
    /// a copyset"). The empty set is inside.
    pub fn covers(&self, nodes: &[NodeId]) -> bool {
        nodes.is_empty() || self.containing(nodes).next().is_some()
    }
}

/// What [`update_family`] changed, for logs and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FamilyUpdate {
    /// The family after the update.
    pub family: CopysetFamily,
    /// Copysets added for nodes that were in none (expansion).
    pub added: usize,
    /// Copysets in which a removed node was replaced by a live one, or a repeated failure
    /// domain by a missing one (healing).
    pub replaced: usize,
    /// Copysets dropped (a removed member with no substitute, or a duplicate).
    pub dropped: usize,
}

/// Keeps a persisted family valid as nodes come and go; `None` when nothing changes.
///
/// - **Removal**: a node absent from `nodes`, `Removed`, draining, or Offline for at least
///   `repair_delay_ms` at `now_ms` is replaced, in every copyset holding it, by a
///   schedulable node not in that copyset: same failure domain first, then a domain the
///   copyset lacks, then the node in the fewest copysets. Shards on
///   `{gone, b, c}` are then repaired to `{sub, b, c}`, still a copyset. With no candidate
///   the copyset is dropped.
/// - **Expansion**: a node that can receive and is in no copyset gets
///   [`permutations`]`(S, R)` copysets, each derived from an existing copyset by replacing
///   its member in the new node's domain (or, with none there, its member in the most
///   copysets). Existing copysets are kept, so every existing replica set stays valid, and
///   a shard on the base copyset can move one replica to the new node and still be inside
///   a copyset: expansion by ordinary single-replica balance moves.
///
/// - **Healing**: a copyset whose members share a failure domain while a domain it lacks
///   has a schedulable node (substitutes drawn while a zone was dead, and the zone is
///   back) gets that node, the one in the fewest copysets, in place of its repeated
///   member; its shards follow one replica each (repair's copyset fix). Isolation asks
///   one replica per domain whatever the domain's size, so a small domain's nodes end in
///   many copysets, as they hold many replicas in spread mode too.
///
/// A node Offline for less than the repair delay is kept: it is probably restarting, and
/// repair waits for it too. Deterministic for a given `seed`.
pub fn update_family(
    family: &CopysetFamily,
    nodes: &[NodeView],
    replication: usize,
    isolation: IsolationLevel,
    now_ms: u64,
    repair_delay_ms: u64,
    seed: u64,
) -> Option<FamilyUpdate> {
    let by_id: HashMap<NodeId, &NodeView> = nodes.iter().map(|n| (n.id, n)).collect();
    // A node is gone from the family when repair would replace its replicas: removed,
    // draining (on its way out), or Offline for the repair delay. Substituting it first lets
    // repair and drain put each replica on the substitute, which keeps the shard inside a
    // copyset. If it comes back later it is a new node and gets copysets of its own.
    let gone = |n: &NodeId| {
        by_id.get(n).is_none_or(|v| {
            v.state == meridian_model::NodeState::Removed
                || v.draining
                || (v.state == meridian_model::NodeState::Offline
                    && now_ms.saturating_sub(v.state_since_ms) >= repair_delay_ms)
        })
    };
    let mut sorted: Vec<&NodeView> = nodes.iter().collect();
    sorted.sort_by_key(|n| n.id);
    let mut uses: HashMap<NodeId, u32> = HashMap::new();
    for set in family.sets() {
        for &n in set {
            *uses.entry(n).or_default() += 1;
        }
    }
    let needs_removal = family.sets().iter().flatten().any(gone);
    let new_nodes: Vec<NodeId> = sorted
        .iter()
        .filter(|n| n.can_receive() && !uses.contains_key(&n.id))
        .map(|n| n.id)
        .collect();
    if !needs_removal && new_nodes.is_empty() {
        return None;
    }
    let mut domains = IsolationDomains::new(isolation);
    let dom: HashMap<NodeId, usize> = sorted
        .iter()
        .map(|n| (n.id, domains.intern(&n.labels, n.id)))
        .collect();
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut sets: Vec<Vec<NodeId>> = Vec::with_capacity(family.len());
    let mut seen: HashSet<Vec<NodeId>> = HashSet::new();
    let (mut replaced, mut dropped, mut added) = (0, 0, 0);
    let key = |s: &[NodeId]| {
        let mut k = s.to_vec();
        k.sort_unstable();
        k
    };
    // Removal: substitute, in place, so the copyset keeps its other members.
    for set in family.sets() {
        let mut set = set.clone();
        let mut ok = true;
        if set.iter().any(gone) {
            for slot in 0..set.len() {
                let x = set[slot];
                if !gone(&x) {
                    continue;
                }
                let rest: Vec<NodeId> = set.iter().copied().filter(|&n| n != x).collect();
                let rest_doms: Vec<usize> =
                    rest.iter().filter_map(|n| dom.get(n).copied()).collect();
                let x_dom = dom.get(&x).copied();
                let mut cands: Vec<&NodeView> = sorted
                    .iter()
                    .copied()
                    .filter(|n| n.can_receive() && !set.contains(&n.id))
                    .collect();
                cands.shuffle(&mut rng);
                let pick = cands.into_iter().min_by_key(|n| {
                    let d = dom[&n.id];
                    (
                        Some(d) != x_dom,
                        rest_doms.contains(&d),
                        uses.get(&n.id).copied().unwrap_or(0),
                    )
                });
                match pick {
                    Some(p) => {
                        set[slot] = p.id;
                        *uses.entry(p.id).or_default() += 1;
                    }
                    None => {
                        ok = false;
                        break;
                    }
                }
            }
            if ok {
                replaced += 1;
            }
        }
        if ok && seen.insert(key(&set)) {
            sets.push(set);
        } else {
            dropped += 1;
        }
    }
    for n in uses.keys().copied().collect::<Vec<_>>() {
        if gone(&n) {
            uses.remove(&n);
        }
    }
    // Expansion: each new node joins `P` copysets derived from existing ones.
    let per_node = permutations(family.scatter_width(), replication);
    let mut base_uses: HashMap<usize, u32> = HashMap::new();
    let mut donors: HashMap<NodeId, u32> = HashMap::new();
    let base_count = sets.len();
    for n in new_nodes {
        let d = dom[&n];
        let mut partners: HashSet<NodeId> = HashSet::new();
        for _ in 0..per_node {
            let mut order: Vec<usize> = (0..base_count).collect();
            order.shuffle(&mut rng);
            let choice = order
                .into_iter()
                .filter(|&b| !sets[b].contains(&n) && sets[b].iter().all(|m| !gone(m)))
                .filter_map(|b| {
                    let base = &sets[b];
                    // The member to replace: the one in n's domain, else the one whose
                    // domain repeats in the set, else the one in the most copysets.
                    let m = base.iter().copied().max_by_key(|m| {
                        let md = dom.get(m).copied();
                        let repeats = base
                            .iter()
                            .filter(|o| *o != m && dom.get(o).copied() == md)
                            .count();
                        (
                            md == Some(d),
                            repeats,
                            uses.get(m).copied().unwrap_or(0),
                            *m,
                        )
                    })?;
                    let mut next: Vec<NodeId> = base.clone();
                    let slot = next.iter().position(|&x| x == m)?;
                    next[slot] = n;
                    if seen.contains(&key(&next)) {
                        return None;
                    }
                    // Spread the bases and the donors: shards of a base already used for
                    // another new node, or of a member already replaced for one, are
                    // partly spoken for.
                    let shared = next.iter().filter(|p| partners.contains(p)).count();
                    let rank = (
                        base_uses.get(&b).copied().unwrap_or(0),
                        donors.get(&m).copied().unwrap_or(0),
                        shared,
                    );
                    Some((rank, b, m, next))
                })
                .min_by_key(|(rank, ..)| *rank);
            let Some((_, b, m, next)) = choice else {
                break;
            };
            *base_uses.entry(b).or_default() += 1;
            *donors.entry(m).or_default() += 1;
            partners.extend(next.iter().copied().filter(|&p| p != n));
            for &m in &next {
                *uses.entry(m).or_default() += 1;
            }
            seen.insert(key(&next));
            sets.push(next);
            added += 1;
        }
    }
    // Healing: a copyset whose members share a domain while a domain it lacks has a node
    // (a substitute chosen when a zone was dead, and the zone is back) gets that node in
    // place of its repeated member. Its shards then move one replica each (repair's
    // `CopysetFix`), which is the domain fix, inside the family.
    let mut healed = 0;
    let schedulable: Vec<&NodeView> = sorted.iter().copied().filter(|n| n.can_receive()).collect();
    for set in &mut sets {
        let doms: Vec<Option<usize>> = set.iter().map(|n| dom.get(n).copied()).collect();
        let Some(slot) = (0..set.len())
            .filter(|&i| (0..set.len()).any(|j| j != i && doms[j] == doms[i]))
            .max_by_key(|&i| (uses.get(&set[i]).copied().unwrap_or(0), set[i]))
        else {
            continue;
        };
        let mut cands: Vec<&NodeView> = schedulable
            .iter()
            .copied()
            .filter(|n| !set.contains(&n.id) && !doms.contains(&dom.get(&n.id).copied()))
            .collect();
        cands.shuffle(&mut rng);
        let Some(pick) = cands
            .into_iter()
            .min_by_key(|n| uses.get(&n.id).copied().unwrap_or(0))
        else {
            continue;
        };
        let mut next = set.clone();
        next[slot] = pick.id;
        if !seen.insert(key(&next)) {
            continue;
        }
        if let Some(u) = uses.get_mut(&set[slot]) {
            *u = u.saturating_sub(1);
        }
        *uses.entry(pick.id).or_default() += 1;
        *set = next;
        healed += 1;
    }
    if replaced == 0 && dropped == 0 && added == 0 && healed == 0 {
        return None;
    }
    Some(FamilyUpdate {
        family: CopysetFamily::new(sets, family.scatter_width()),
        added,
        replaced: replaced + healed,
        dropped,
    })
}

/// Builds a copyset family over the schedulable nodes among `nodes`, with groups spanning
/// distinct domains at `isolation` where possible. Deterministic for a given `seed`.
pub fn build_copysets(
    nodes: &[NodeView],
    replication: usize,
    scatter_width: u32,
    isolation: IsolationLevel,
    seed: u64,
) -> Result<CopysetFamily, SchedulerError> {
    let mut cands: Vec<&NodeView> = nodes.iter().filter(|n| n.can_receive()).collect();
    cands.sort_by_key(|n| n.id);
    if cands.len() < replication.max(1) {
        return Err(SchedulerError::NotEnoughNodes {
            need: replication.max(1),
            have: cands.len(),
        });
    }
    let mut domains = IsolationDomains::new(isolation);
    let dom: Vec<usize> = cands
        .iter()
        .map(|n| domains.intern(&n.labels, n.id))
        .collect();
    let mut rng = SmallRng::seed_from_u64(seed);
    let family = build_family(&dom, replication, scatter_width, &mut rng);
    Ok(CopysetFamily::new(
        family
            .into_iter()
            .map(|s| s.into_iter().map(|i| cands[i].id).collect())
            .collect(),
        scatter_width,
    ))
}

/// Number of permutations for scatter width `s` and `r` replicas: each permutation gives a
/// node `r - 1` new partners.
pub fn permutations(scatter_width: u32, replication: usize) -> usize {
    let per = replication.saturating_sub(1).max(1);
    (scatter_width as usize).div_ceil(per).max(1)
}

/// The family as node indices; `dom[i]` is node i's failure domain.
pub(crate) fn build_family(
    dom: &[usize],
    r: usize,
    scatter_width: u32,
    rng: &mut SmallRng,
) -> Vec<Vec<usize>> {
    let r = r.max(1).min(dom.len());
    let domain_count = dom.iter().copied().max().map_or(0, |m| m + 1);
    let mut seen = HashSet::new();
    let mut family = Vec::new();
    for _ in 0..permutations(scatter_width, r) {
        // One permutation: shuffle each domain, then deal groups taking one node from each
        // of the r domains with the most nodes left (random among equals), which keeps the
        // domains draining evenly so nearly every group spans r distinct domains.
        let mut buckets: Vec<Vec<usize>> = vec![Vec::new(); domain_count];
        for (i, &d) in dom.iter().enumerate() {
            buckets[d].push(i);
        }
        for b in &mut buckets {
            b.shuffle(rng);
        }
        let mut left = dom.len();
        let mut order: Vec<usize> = (0..domain_count).collect();
        let mut groups = Vec::new();
        while left >= r {
            order.shuffle(rng);
            order.sort_by_key(|&d| std::cmp::Reverse(buckets[d].len()));
            let mut group = Vec::with_capacity(r);
            // Round-robin over the fullest domains; wraps only with fewer domains than r.
            let mut k = 0;
            while group.len() < r {
                let d = order[k % order.len()];
                if let Some(n) = buckets[d].pop() {
                    group.push(n);
                }
                k += 1;
            }
            left -= r;
            groups.push(group);
        }
        // Fewer than r nodes left: complete their group with other nodes, free domains first,
        // so every node is in at least one group per permutation.
        let mut rest: Vec<usize> = buckets.into_iter().flatten().collect();
        if !rest.is_empty() {
            let mut others: Vec<usize> = (0..dom.len()).filter(|i| !rest.contains(i)).collect();
            others.shuffle(rng);
            while rest.len() < r {
                // A node from a domain the group lacks, else any.
                let pick = others
                    .iter()
                    .position(|&i| rest.iter().all(|&x| dom[x] != dom[i]))
                    .or((!others.is_empty()).then_some(0));
                let Some(p) = pick else { break };
                rest.push(others.swap_remove(p));
            }
            groups.push(rest);
        }
        for g in groups {
            let mut key = g.clone();
            key.sort_unstable();
            if seen.insert(key) {
                family.push(g);
            }
        }
    }
    family
}

/// Replica sets for `count` shards: copysets in build order, round-robin. Within one
/// permutation the copysets are disjoint, so each pass over a permutation adds one replica
/// to every node: counts stay even.
pub(crate) fn assign(family: &[Vec<usize>], count: usize) -> Vec<Vec<usize>> {
    if family.is_empty() {
        return vec![Vec::new(); count];
    }
    (0..count)
        .map(|k| family[k % family.len()].clone())
        .collect()
}

/// A Monte Carlo estimate of the probability of losing data.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LossEstimate {
    /// Fraction of trials in which some replica set lost every member.
    pub probability: f64,
    /// Trials run.
    pub trials: u32,
    /// Trials with a loss.
    pub losses: u32,
    /// Distinct replica sets examined.
    pub replica_sets: usize,
    /// Nodes failed per trial.
    pub failed_nodes: usize,
}

/// Most replica-set memberships indexed per node; larger placements are checked by
/// enumerating subsets of the failed nodes instead.
const NODE_INDEX_LIMIT: usize = 8_000_000;

/// Distinct replica sets over `node_count` dense node indices, packed for fast lookup.
///
/// A set is packed as its sorted members (index + 1, so 0 means "no member") in `bits` bits
/// each. Membership checks use one of two methods per trial, whichever is cheaper: walk the
/// sets of each failed node (sparse families such as copysets), or enumerate the subsets of
/// the failed nodes and look each up (dense placements such as millions of random sets).
#[derive(Debug, Clone)]
pub struct LossModel {
    node_count: usize,
    bits: u32,
    keys: Vec<u64>,
    sizes: Vec<usize>,
    memberships: usize,
    by_node: Option<(Vec<u32>, Vec<u32>)>,
}

impl LossModel {
    /// Packs `sets` (each a list of node indices below `node_count`). Fails if a set is too
    /// large to pack in 64 bits, or names an index out of range.
    pub fn from_indices<S: AsRef<[u32]>>(
        node_count: usize,
        sets: impl IntoIterator<Item = S>,
    ) -> Result<Self, SchedulerError> {
        let bits = u64::BITS - (node_count as u64).leading_zeros();
        let slots = (64 / bits.max(1)) as usize;
        let mut keys = Vec::new();
        let mut buf = Vec::new();
        let mut sizes = HashSet::new();
        let mut memberships = 0;
        for set in sets {
            let set = set.as_ref();
            if set.is_empty() {
                continue;
            }
            if set.len() > slots || set.iter().any(|&i| i as usize >= node_count) {
                return Err(SchedulerError::InvalidConfig(format!(
                    "replica set {set:?} cannot be packed for {node_count} nodes"
                )));
            }
            buf.clear();
            buf.extend_from_slice(set);
            buf.sort_unstable();
            buf.dedup();
            sizes.insert(buf.len());
            memberships += buf.len();
            keys.push(pack(&buf, bits));
        }
        keys.sort_unstable();
        keys.dedup();
        let mut sizes: Vec<usize> = sizes.into_iter().collect();
        sizes.sort_unstable();
        let mut model = Self {
            node_count,
            bits,
            keys,
            sizes,
            memberships,
            by_node: None,
        };
        // Duplicates were counted before dedup: an upper bound is all the limit needs.
        if model.memberships <= NODE_INDEX_LIMIT {
            model.index_by_node();
        }
        Ok(model)
    }

    /// Packs replica sets named by node id; `nodes` lists every node of the cluster.
    pub fn from_node_ids<S: AsRef<[NodeId]>>(
        nodes: &[NodeId],
        sets: impl IntoIterator<Item = S>,
    ) -> Result<Self, SchedulerError> {
        let pos: HashMap<NodeId, u32> = nodes
            .iter()
            .enumerate()
            .map(|(i, &n)| (n, i as u32))
            .collect();
        let mut idx = Vec::new();
        for set in sets {
            let set = set.as_ref();
            let mut v = Vec::with_capacity(set.len());
            for n in set {
                let i = pos.get(n).copied().ok_or_else(|| {
                    SchedulerError::InvalidConfig(format!("replica on unknown node {n}"))
                })?;
                v.push(i);
            }
            idx.push(v);
        }
        Self::from_indices(nodes.len(), idx)
    }

    /// Distinct replica sets.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there are no replica sets.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    fn index_by_node(&mut self) {
        let mut counts = vec![0u32; self.node_count + 1];
        for &k in &self.keys {
            for m in members(k, self.bits) {
                counts[m as usize + 1] += 1;
            }
        }
        for i in 1..counts.len() {
            counts[i] += counts[i - 1];
        }
        let offsets = counts.clone();
        let mut fill = counts;
        let mut ids = vec![0u32; offsets[self.node_count] as usize];
        for (s, &k) in self.keys.iter().enumerate() {
            for m in members(k, self.bits) {
                ids[fill[m as usize] as usize] = s as u32;
                fill[m as usize] += 1;
            }
        }
        self.by_node = Some((offsets, ids));
    }

    /// Estimates the probability that failing `failed_fraction` of the nodes at once
    /// (rounded, at least one) loses every replica of some set, over `trials` random
    /// failure sets.
    pub fn estimate<G: Rng + ?Sized>(
        &self,
        failed_fraction: f64,
        trials: u32,
        rng: &mut G,
    ) -> LossEstimate {
        let f = ((self.node_count as f64 * failed_fraction).round() as usize)
            .clamp(1, self.node_count.max(1));
        let log_m = (self.keys.len().max(2) as f64).log2();
        let enum_cost: f64 = self
            .sizes
            .iter()
            .map(|&k| binomial(f as u64, k as u64) * log_m)
            .sum();
        let node_cost = self
            .by_node
            .as_ref()
            .map(|(off, _)| f as f64 * off[self.node_count] as f64 / self.node_count as f64);
        let use_nodes = node_cost.is_some_and(|c| c <= enum_cost);
        let mut failed = vec![false; self.node_count];
        let mut losses = 0;
        for _ in 0..trials {
            let mut sample: Vec<u32> = rand::seq::index::sample(rng, self.node_count, f)
                .into_iter()
                .map(|i| i as u32)
                .collect();
            sample.sort_unstable();
            let lost = if use_nodes {
                for &i in &sample {
                    failed[i as usize] = true;
                }
                let lost = self.lost_by_node(&sample, &failed);
                for &i in &sample {
                    failed[i as usize] = false;
                }
                lost
            } else {
                self.lost_by_subsets(&sample)
            };
            losses += u32::from(lost);
        }
        LossEstimate {
            probability: if trials == 0 {
                0.0
            } else {
                f64::from(losses) / f64::from(trials)
            },
            trials,
            losses,
            replica_sets: self.keys.len(),
            failed_nodes: f,
        }
    }

    fn lost_by_node(&self, sample: &[u32], failed: &[bool]) -> bool {
        let Some((off, ids)) = &self.by_node else {
            return false;
        };
        sample.iter().any(|&u| {
            ids[off[u as usize] as usize..off[u as usize + 1] as usize]
                .iter()
                .any(|&s| members(self.keys[s as usize], self.bits).all(|m| failed[m as usize]))
        })
    }

    fn lost_by_subsets(&self, sample: &[u32]) -> bool {
        let mut chosen = Vec::new();
        self.sizes
            .iter()
            .any(|&k| k <= sample.len() && self.subset_hit(sample, k, 0, &mut chosen))
    }

    /// Whether some k-subset of `sample` (extending `chosen`, from index `from`) is a set.
    fn subset_hit(&self, sample: &[u32], k: usize, from: usize, chosen: &mut Vec<u32>) -> bool {
        if chosen.len() == k {
            return self.keys.binary_search(&pack(chosen, self.bits)).is_ok();
        }
        let need = k - chosen.len();
        for i in from..=sample.len() - need {
            chosen.push(sample[i]);
            let hit = self.subset_hit(sample, k, i + 1, chosen);
            chosen.pop();
            if hit {
                return true;
            }
        }
        false
    }
}

fn pack(sorted: &[u32], bits: u32) -> u64 {
    sorted
        .iter()
        .fold(0u64, |acc, &i| (acc << bits) | (u64::from(i) + 1))
}

/// The members of a packed set (last first).
fn members(mut key: u64, bits: u32) -> impl Iterator<Item = u32> {
    let mask = (1u64 << bits) - 1;
    std::iter::from_fn(move || {
        if key == 0 {
            return None;
        }
        let m = ((key & mask) - 1) as u32;
        key >>= bits;
        Some(m)
    })
}

fn binomial(n: u64, k: u64) -> f64 {
    if k > n {
        return 0.0;
    }
    (0..k).fold(1.0, |acc, i| acc * (n - i) as f64 / (i + 1) as f64)
}

/// Monte Carlo probability that failing `failed_fraction` of `nodes` at once loses all
/// replicas of some set in `replica_sets` (shards' replica sets, or a copyset family).
pub fn loss_probability<S: AsRef<[NodeId]>, G: Rng + ?Sized>(
    replica_sets: impl IntoIterator<Item = S>,
    nodes: &[NodeId],
    failed_fraction: f64,
    trials: u32,
    rng: &mut G,
) -> Result<LossEstimate, SchedulerError> {
    Ok(LossModel::from_node_ids(nodes, replica_sets)?.estimate(failed_fraction, trials, rng))
}

/// The same probability computed in closed form, treating `sets` distinct replica sets of
/// `r` nodes as independent: `1 - (1 - C(f,r)/C(n,r))^sets`. A check on the Monte Carlo
/// figure, and the figure to quote when it is too small to sample.
pub fn analytic_loss_probability(sets: usize, node_count: usize, r: usize, failed: usize) -> f64 {
    let p = binomial(failed as u64, r as u64) / binomial(node_count as u64, r as u64);
    1.0 - (1.0 - p).powf(sets as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::node_view;

    #[test]
    fn every_node_gets_scatter_width_partners_in_distinct_zones() {
        let nodes: Vec<NodeView> = (1..=30).map(|i| node_view(i, 3)).collect();
        let fam = build_copysets(&nodes, 3, 4, IsolationLevel::Zone, 9).unwrap();
        assert_eq!(fam.len(), 20, "2 permutations of 10 groups");
        for set in fam.sets() {
            let mut zones: Vec<_> = set
                .iter()
                .map(|n| {
                    nodes
                        .iter()
                        .find(|v| v.id == *n)
                        .unwrap()
                        .labels
                        .zone
                        .clone()
                })
                .collect();
            zones.sort();
            zones.dedup();
            assert_eq!(zones.len(), 3);
        }
        for n in &nodes {
            let mut partners: Vec<NodeId> = fam
                .sets()
                .iter()
                .filter(|s| s.contains(&n.id))
                .flatten()
                .copied()
                .filter(|&p| p != n.id)
                .collect();
            partners.sort();
            partners.dedup();
            assert!(partners.len() >= 3 && partners.len() <= 4, "{partners:?}");
        }
    }

    #[test]
    fn loss_model_methods_agree() {
        let mut rng = SmallRng::seed_from_u64(3);
        let sets: Vec<[u32; 3]> = (0..3000)
            .map(|_| {
                let s = rand::seq::index::sample(&mut rng, 60, 3);
                [s.index(0) as u32, s.index(1) as u32, s.index(2) as u32]
            })
            .collect();
        let mut model = LossModel::from_indices(60, &sets).unwrap();
        assert!(model.by_node.is_some());
        let a = model.estimate(0.1, 400, &mut SmallRng::seed_from_u64(5));
        let by_nodes = model.by_node.take();
        let b = model.estimate(0.1, 400, &mut SmallRng::seed_from_u64(5));
        model.by_node = by_nodes;
        assert_eq!(a.losses, b.losses);
        assert!(a.losses > 0);
    }

    #[test]
    fn copysets_lose_data_far_less_often_than_random_sets() {
        let nodes: Vec<NodeView> = (1..=300).map(|i| node_view(i, 3)).collect();
        let ids: Vec<NodeId> = nodes.iter().map(|n| n.id).collect();
        let fam = build_copysets(&nodes, 3, 4, IsolationLevel::Zone, 1).unwrap();
        let mut rng = SmallRng::seed_from_u64(2);
        let random: Vec<Vec<NodeId>> = (0..20_000)
            .map(|_| {
                rand::seq::index::sample(&mut rng, 300, 3)
                    .into_iter()
                    .map(|i| ids[i])
                    .collect()
            })
            .collect();
        let r = loss_probability(&random, &ids, 0.02, 500, &mut rng).unwrap();
        let c = loss_probability(fam.sets(), &ids, 0.02, 500, &mut rng).unwrap();
        assert!(r.probability > 5.0 * c.probability.max(0.01), "{r:?} {c:?}");
    }
}
