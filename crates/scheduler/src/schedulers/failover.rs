//! Failover: a shard whose leader is on a dead node gets a new leader, if one can take over
//! without losing committed writes; otherwise the shard waits, visibly, for a follower to
//! catch up or for an admin to force a promotion.

use super::{Scheduler, SchedulerConfig};
use crate::error::SchedulerError;
use crate::operator::{Operator, OperatorKind, Priority, Step};
use crate::placement::{choose_leader_target, choose_target, DomainRule};
use crate::view::{ClusterView, ShardView, Tally};
use meridian_model::{NodeId, NodeState, ReplicaRole, ShardId};
use serde::{Deserialize, Serialize};
use std::cmp::Reverse;

/// Restores a leader to every shard whose leader is on an Offline or Removed node (or that
/// has none).
///
/// Which replica may take over depends on where the data lives:
///
/// - **Data in the replicas** (the default): promote, in one `PromoteFollower` step, the
///   most up-to-date follower (highest applied log position) that is
///   [caught up](ShardView::caught_up): Ready at the current version on an Online node,
///   and at most `max_promote_lag` positions behind the shard's last known committed
///   position. Among equally up-to-date ones, a node that
///   [can lead](crate::NodeView::can_lead) and has the fewest leaders wins (an evicting,
///   draining or cordoned node only when no other qualifies: availability beats the
///   eviction, which moves the leadership on later). If no follower qualifies, nothing
///   is proposed: the shard **waits** ([`waiting_shards`]) until a follower catches up,
///   the old leader comes back, or an admin forces a promotion ([`force_promote`]). A
///   stale replica is never reopened as leader: that would silently drop acknowledged
///   writes.
/// - **Shared storage** (`ClusterConfig::shared_storage`): positions do not matter.
///   Promote an in-sync follower on an Online node (fewest leaders first); with none,
///   `ReopenShard` on a live replica's node, or else on a new node, which opens the shard
///   from the shared storage.
///
/// Log positions are the database's own counters; zero means "not reported". When no
/// replica of a shard ever reported a position (a database that reports none), positions
/// are ignored and every in-sync follower qualifies, as if it were caught up. When some
/// do, a follower reporting zero counts as unknown, so not caught up.
///
/// Safe without the old leader's consent because Offline comes only after its lease ran
/// out. Restoring the replica count is left to the repair scheduler.
#[derive(Debug, Default)]
pub struct FailoverScheduler {
    max_promote_lag: u64,
}

impl FailoverScheduler {
    /// A failover scheduler with `config`'s `max_promote_lag`.
    pub fn new(config: SchedulerConfig) -> Self {
        Self {
            max_promote_lag: config.max_promote_lag,
        }
    }
}

/// A shard whose leader is down and that no follower can take over without losing
/// committed writes: it waits (no operator) until one catches up or an admin forces it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaitingShard {
    /// The shard.
    pub shard: ShardId,
    /// Its leader in the metadata (on a dead node), if any.
    pub leader: Option<NodeId>,
    /// The shard's last known committed log position.
    pub committed: u64,
    /// The most up-to-date follower on an Online node, with its applied position: the
    /// one `ctl force-promote` would lose least with.
    pub best_follower: Option<(NodeId, u64)>,
    /// The lag allowed (`max_promote_lag`).
    pub max_lag: u64,
    /// Why, in words, for logs and the admin API.
    pub reason: String,
}

/// What failover does for one shard.
enum Choice {
    /// Promote the follower at this node index.
    Promote(usize),
    /// Reopen the shard on the node at this index (shared storage only).
    Reopen(usize),
    /// Nothing may take over yet.
    Wait(WaitingShard),
}

/// Whether the shard's leader is on a node that is up.
fn leader_alive(view: &ClusterView, sv: &ShardView) -> bool {
    sv.shard
        .leader()
        .and_then(|l| view.node(l))
        .is_some_and(|n| !n.is_down())
}

/// The failover decision for one shard whose leader is down; `None` when nothing can be
/// done at all (shared storage and no node to reopen on).
fn choose(view: &ClusterView, sv: &ShardView, tally: &Tally, max_lag: u64) -> Option<Choice> {
    let nodes = view.nodes();
    let s = &sv.shard;
    // Prefer nodes that may lead; an evicting, draining or cordoned node beats no leader.
    let rank = |i: usize| {
        (
            !nodes[i].can_lead(),
            !nodes[i].can_receive(),
            tally.leaders[i],
            nodes[i].id,
        )
    };
    let live_followers = || {
        s.replicas
            .iter()
            .filter(|r| r.role == ReplicaRole::Follower)
            .filter_map(|r| view.node_index(r.node))
            .filter(|&i| nodes[i].state == NodeState::Online)
    };
    if view.config().shared_storage {
        let promote = live_followers()
            .filter(|&i| sv.is_in_sync(nodes[i].id))
            .min_by_key(|&i| rank(i));
        if let Some(i) = promote {
            return Some(Choice::Promote(i));
        }
        let live_replica = s
            .replicas
            .iter()
            .filter_map(|r| view.node_index(r.node))
            .filter(|&i| nodes[i].state == NodeState::Online)
            .min_by_key(|&i| rank(i));
        return live_replica
            .or_else(|| choose_leader_target(view, tally, s, &[], DomainRule::Prefer))
            .or_else(|| choose_target(view, tally, s, &[], DomainRule::Prefer))
            .map(Choice::Reopen);
    }
    let applied = |i: usize| sv.position(nodes[i].id).applied;
    let promote = live_followers()
        .filter(|&i| sv.caught_up(nodes[i].id, max_lag))
        .min_by_key(|&i| (Reverse(applied(i)), rank(i)));
    if let Some(i) = promote {
        return Some(Choice::Promote(i));
    }
    let best = live_followers()
        .min_by_key(|&i| (Reverse(applied(i)), rank(i)))
        .map(|i| (nodes[i].id, applied(i)));
    let committed = sv.committed;
    let reason = match best {
        None => "no follower on an Online node".to_string(),
        Some((n, _)) if !sv.is_in_sync(n) => {
            format!(
                "no in-sync follower (best live follower {n} is not Ready at the current version)"
            )
        }
        Some((n, a)) => format!(
            "no follower within max_promote_lag {max_lag} of committed position {committed} \
             (best: {n} applied {a}, lag {})",
            committed.saturating_sub(a)
        ),
    };
    Some(Choice::Wait(WaitingShard {
        shard: s.id,
        leader: s.leader(),
        committed,
        best_follower: best,
        max_lag,
        reason,
    }))
}

impl Scheduler for FailoverScheduler {
    fn name(&self) -> &'static str {
        "failover"
    }

    fn reconfigure(&mut self, config: SchedulerConfig) {
        self.max_promote_lag = config.max_promote_lag;
    }

    fn essential(&self) -> bool {
        true
    }

    fn schedule(&mut self, view: &ClusterView, now: u64) -> Vec<Operator> {
        let mut tally = view.tally();
        let nodes = view.nodes();
        let mut ops = Vec::new();
        for sv in view.shards() {
            let s = &sv.shard;
            if leader_alive(view, sv) || !view.may_propose(s.id, Priority::Failover) {
                continue;
            }
            let why = match s.leader() {
                Some(l) => format!("leader {l} is offline"),
                None => "no leader".to_string(),
            };
            let (step, i, reason) = match choose(view, sv, &tally, self.max_promote_lag) {
                Some(Choice::Promote(i)) => {
                    let to = nodes[i].id;
                    let reason = if sv.positions_known() && !view.config().shared_storage {
                        format!(
                            "{why}: promote the most up-to-date follower {to} (applied {}, committed {})",
                            sv.position(to).applied,
                            sv.committed
                        )
                    } else {
                        format!("{why}: promote in-sync follower {to}")
                    };
                    (Step::PromoteFollower { to }, i, reason)
                }
                Some(Choice::Reopen(i)) => {
                    let on = nodes[i].id;
                    let reason = format!(
                        "{why}, no in-sync follower alive: reopen on {on} (shared storage)"
                    );
                    (Step::ReopenShard { on }, i, reason)
                }
                Some(Choice::Wait(_)) | None => continue,
            };
            tally.leaders[i] += 1;
            ops.push(Operator::new(
                OperatorKind::Failover,
                s,
                vec![step],
                now,
                reason,
            ));
        }
        ops
    }
}

/// Shards whose leader is down and that wait for an in-sync follower (see
/// [`FailoverScheduler`]): the same decision the scheduler makes, for metrics, logs and the
/// admin API. A shard with a failover-priority operator running (a forced promotion) is
/// not waiting.
pub fn waiting_shards(view: &ClusterView, config: &SchedulerConfig) -> Vec<WaitingShard> {
    let tally = view.tally();
    view.shards()
        .iter()
        .filter(|sv| !leader_alive(view, sv) && view.may_propose(sv.shard.id, Priority::Failover))
        .filter_map(
            |sv| match choose(view, sv, &tally, config.max_promote_lag) {
                Some(Choice::Wait(w)) => Some(w),
                _ => None,
            },
        )
        .collect()
}

/// An admin's forced promotion of follower `to` of `shard`, whatever its log position
/// (`meridian ctl force-promote`): for a shard that waits because no follower is caught
/// up, accepting the loss of what `to` has not applied. `by` names who asked, for the
/// operator's reason (kept in the operator history).
///
/// Refused unless the shard's leader is down (a live leader hands over with
/// transfer-leader, which loses nothing) and `to` holds a follower of the shard on an
/// Online node.
pub fn force_promote(
    view: &ClusterView,
    shard: ShardId,
    to: NodeId,
    now: u64,
    by: &str,
) -> Result<Operator, SchedulerError> {
    let refuse = |why: String| Err(SchedulerError::ForcePromoteRefused(why));
    let Some(sv) = view.shard(shard) else {
        return refuse(format!("{shard} not found"));
    };
    let s = &sv.shard;
    if leader_alive(view, sv) {
        let leader = s.leader().map_or("?".to_string(), |l| l.to_string());
        return refuse(format!(
            "the leader {leader} of {shard} is alive: use transfer-leader, which loses nothing"
        ));
    }
    if s.role_of(to) != Some(ReplicaRole::Follower) {
        return refuse(format!("{to} holds no follower of {shard}"));
    }
    if view.node(to).map(|n| n.state) != Some(NodeState::Online) {
        return refuse(format!("{to} is not Online"));
    }
    let applied = sv.position(to).applied;
    let reason = format!(
        "forced by {by}: promote {to} (applied {applied}, shard committed {}, lag {}); \
         writes it has not applied are lost",
        sv.committed,
        sv.lag(to)
    );
    Ok(Operator::new(
        OperatorKind::ForcedPromote,
        s,
        vec![Step::PromoteFollower { to }],
        now,
        reason,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::{ControllerConfig, OperatorController};
    use crate::testing::{modify, ClusterBuilder};
    use meridian_model::LogPosition;

    const DEAD: NodeId = NodeId(1);

    /// Three nodes in three zones, every shard on all three; node 1's shards are the ones
    /// that fail over. Returns the view and one shard node 1 leads, with its followers.
    fn cluster(shared_storage: bool) -> (ClusterView, ShardId, NodeId, NodeId) {
        let view = ClusterBuilder::new()
            .zones(3)
            .nodes(3)
            .shards(3)
            .shared_storage(shared_storage)
            .build();
        let shard = view
            .shards()
            .iter()
            .find(|s| s.shard.leader() == Some(DEAD))
            .expect("node 1 leads a shard")
            .shard
            .clone();
        let mut f = shard.followers();
        let (a, b) = (f.next().unwrap(), f.next().unwrap());
        (view, shard.id, a, b)
    }

    /// Sets the positions of `shard`'s replicas: the dead leader last reported `committed`,
    /// each follower its applied position (and the committed it heard).
    fn positions(
        view: ClusterView,
        shard: ShardId,
        committed: u64,
        applied: &[(NodeId, u64)],
    ) -> ClusterView {
        modify(view, |_, shards| {
            let sv = shards.iter_mut().find(|s| s.shard.id == shard).unwrap();
            sv.committed = committed;
            sv.positions = vec![(
                DEAD,
                LogPosition {
                    applied: committed,
                    committed,
                },
            )];
            for &(n, a) in applied {
                sv.positions.push((
                    n,
                    LogPosition {
                        applied: a,
                        committed: a,
                    },
                ));
            }
        })
    }

    fn kill(view: ClusterView) -> ClusterView {
        modify(view, |nodes, _| {
            let n = nodes.iter_mut().find(|n| n.id == DEAD).unwrap();
            n.state = NodeState::Offline;
        })
    }

    fn config(max_promote_lag: u64) -> SchedulerConfig {
        SchedulerConfig {
            max_promote_lag,
            ..SchedulerConfig::default()
        }
    }

    fn step_for(ops: &[Operator], shard: ShardId) -> Option<Step> {
        ops.iter().find(|o| o.shard == shard).map(|o| o.steps[0])
    }

    #[test]
    fn failover_promotes_the_most_up_to_date_follower() {
        let (view, shard, a, b) = cluster(false);
        // Either order: the choice follows the positions, not the node ids or zones.
        for (ahead, behind) in [(a, b), (b, a)] {
            let v = kill(positions(
                view.clone(),
                shard,
                1000,
                &[(ahead, 1000), (behind, 995)],
            ));
            let ops = FailoverScheduler::new(config(10)).schedule(&v, 10);
            assert_eq!(
                step_for(&ops, shard),
                Some(Step::PromoteFollower { to: ahead })
            );
            assert!(waiting_shards(&v, &config(10)).is_empty());
        }
    }

    #[test]
    fn failover_waits_when_every_follower_lags_beyond_max_promote_lag() {
        let (view, shard, a, b) = cluster(false);
        let v = kill(positions(view, shard, 1000, &[(a, 950), (b, 980)]));
        let ops = FailoverScheduler::new(config(10)).schedule(&v, 10);
        assert_eq!(step_for(&ops, shard), None, "{ops:?}");
        let waiting = waiting_shards(&v, &config(10));
        let w = waiting.iter().find(|w| w.shard == shard).expect("waiting");
        assert_eq!(w.leader, Some(DEAD));
        assert_eq!(w.committed, 1000);
        assert_eq!(w.best_follower, Some((b, 980)));
        // A larger allowance lets the best one through.
        let ops = FailoverScheduler::new(config(20)).schedule(&v, 10);
        assert_eq!(step_for(&ops, shard), Some(Step::PromoteFollower { to: b }));
    }

    #[test]
    fn a_waiting_shard_fails_over_once_a_follower_catches_up() {
        let (view, shard, a, b) = cluster(false);
        let lagging = kill(positions(view.clone(), shard, 1000, &[(a, 10), (b, 20)]));
        let mut failover = FailoverScheduler::new(config(0));
        assert_eq!(step_for(&failover.schedule(&lagging, 10), shard), None);
        // `a` applied everything the dead leader last reported committed.
        let caught_up = kill(positions(view, shard, 1000, &[(a, 1000), (b, 20)]));
        assert_eq!(
            step_for(&failover.schedule(&caught_up, 20), shard),
            Some(Step::PromoteFollower { to: a })
        );
    }

    #[test]
    fn failover_never_reopens_a_stale_replica_without_shared_storage() {
        let view = kill(
            ClusterBuilder::new()
                .zones(3)
                .nodes(3)
                .shards(3)
                .no_in_sync()
                .build(),
        );
        let ops = FailoverScheduler::new(config(0)).schedule(&view, 10);
        assert!(ops.is_empty(), "{ops:?}");
        let led = view
            .shards()
            .iter()
            .filter(|s| s.shard.leader() == Some(DEAD))
            .count();
        assert_eq!(waiting_shards(&view, &config(0)).len(), led);
    }

    #[test]
    fn shared_storage_promotes_any_in_sync_follower_whatever_its_position() {
        let (view, shard, a, b) = cluster(true);
        let v = kill(positions(view, shard, 1000, &[(a, 1), (b, 2)]));
        let ops = FailoverScheduler::new(config(0)).schedule(&v, 10);
        assert!(matches!(
            step_for(&ops, shard),
            Some(Step::PromoteFollower { to }) if to == a || to == b
        ));
        assert!(waiting_shards(&v, &config(0)).is_empty());
    }

    #[test]
    fn positions_are_ignored_when_no_replica_of_the_shard_reports_any() {
        // The builder's shards report no positions (all zero): in-sync followers qualify.
        let (view, shard, _, _) = cluster(false);
        let ops = FailoverScheduler::new(config(0)).schedule(&kill(view), 10);
        assert!(matches!(
            step_for(&ops, shard),
            Some(Step::PromoteFollower { .. })
        ));
    }

    #[test]
    fn a_follower_reporting_no_position_is_not_caught_up_when_others_report_one() {
        let (view, shard, a, b) = cluster(false);
        // `a` reports nothing (zero) while the shard's positions are known.
        let v = kill(positions(view.clone(), shard, 1000, &[(a, 0), (b, 1000)]));
        let ops = FailoverScheduler::new(config(u64::MAX)).schedule(&v, 10);
        assert_eq!(step_for(&ops, shard), Some(Step::PromoteFollower { to: b }));
        let v = kill(positions(view, shard, 1000, &[(a, 0), (b, 0)]));
        let ops = FailoverScheduler::new(config(u64::MAX)).schedule(&v, 10);
        assert_eq!(step_for(&ops, shard), None);
    }

    #[test]
    fn force_promote_promotes_a_lagging_follower_and_records_who_asked() {
        let (view, shard, a, b) = cluster(false);
        let v = kill(positions(view, shard, 1000, &[(a, 500), (b, 600)]));
        let op = force_promote(&v, shard, a, 10, "alice@ops").unwrap();
        assert_eq!(op.kind, OperatorKind::ForcedPromote);
        assert_eq!(op.priority, Priority::Failover);
        assert_eq!(op.steps, vec![Step::PromoteFollower { to: a }]);
        assert!(op.reason.contains("forced by alice@ops"), "{}", op.reason);
        assert!(op.reason.contains("lag 500"), "{}", op.reason);
        // Admitted, the shard is no longer waiting and failover leaves it alone.
        let mut c = OperatorController::new(ControllerConfig::default());
        c.try_add(op).unwrap();
        let v = v.with_controller(&c);
        assert!(waiting_shards(&v, &config(0)).is_empty());
        assert_eq!(
            step_for(&FailoverScheduler::new(config(0)).schedule(&v, 20), shard),
            None
        );
    }

    #[test]
    fn force_promote_is_refused_while_the_leader_is_alive_or_for_a_non_follower() {
        let (view, shard, a, _) = cluster(false);
        let err = force_promote(&view, shard, a, 10, "bob").unwrap_err();
        assert!(err.to_string().contains("transfer-leader"), "{err}");
        let dead = kill(view);
        assert!(force_promote(&dead, shard, DEAD, 10, "bob").is_err());
        assert!(force_promote(&dead, shard, NodeId(99), 10, "bob").is_err());
        let offline = modify(dead, |nodes, _| {
            nodes.iter_mut().find(|n| n.id == a).unwrap().state = NodeState::Offline;
        });
        assert!(force_promote(&offline, shard, a, 10, "bob").is_err());
    }
}
