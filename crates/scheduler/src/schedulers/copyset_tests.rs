//! Copyset mode: repair, drain, balance and expansion keep every replica set inside a
//! copyset of the family, with the family kept valid the way the server keeps it.

use super::*;
use crate::controller::{ControllerConfig, ControllerEvent, OperatorController};
use crate::copyset::{update_family, CopysetFamily};
use crate::operator::OperatorKind;
use crate::testing::{modify, ClusterBuilder};
use crate::view::ShardView;
use meridian_model::{NodeId, NodeState};
use std::sync::Arc;

/// Whether the family follows node changes as the server's copyset module makes it
/// (`update_family` before every pass), or stays as first placed.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Family {
    Maintained,
    Frozen,
}

struct Settled {
    view: ClusterView,
    done: Vec<crate::Operator>,
    /// Fewest replicas any shard had after any step.
    min_replicas: usize,
}

/// Runs schedulers and controller with instant, acknowledged instructions until nothing is
/// proposed or running, keeping the family as `family` says.
fn settle(view: ClusterView, now: &mut u64, family: Family) -> Settled {
    let sched = SchedulerConfig::default();
    let mut set = SchedulerSet::new(sched);
    let config = ControllerConfig::default();
    let mut c = OperatorController::new(config);
    let mut fam: Arc<CopysetFamily> = view.copysets().expect("copyset mode").clone();
    let (cfg, nodes, mut shards) = view.into_parts();
    let rf = cfg.replication_factor as usize;
    let mut done = Vec::new();
    let mut min_replicas = usize::MAX;
    for _ in 0..20_000 {
        *now += 100;
        if family == Family::Maintained {
            if let Some(u) = update_family(
                &fam,
                &nodes,
                rf,
                cfg.isolation,
                *now,
                sched.repair_delay_ms,
                7,
            ) {
                fam = Arc::new(u.family);
            }
        }
        let view = ClusterView::new(cfg.clone(), nodes.clone(), shards.clone())
            .with_copysets(Some(fam.clone()))
            .with_operators(c.running(), Some(config.limits.per_node));
        let proposed = set.schedule(&view, *now);
        let quiet = proposed.is_empty() && c.running_count() == 0;
        for op in proposed {
            let _ = c.try_add(op);
        }
        let lookup: Vec<_> = shards.iter().map(|s| s.shard.clone()).collect();
        let events = c.tick(*now, &mut |id| lookup.iter().find(|s| s.id == id).cloned());
        for e in &events {
            let instructions = match e {
                ControllerEvent::StepStarted(st) => {
                    min_replicas = min_replicas.min(st.shard_after.replicas.len());
                    let sv = shards
                        .iter_mut()
                        .find(|s| s.shard.id == st.shard_after.id)
                        .expect("known shard");
                    *sv = ShardView::all_in_sync(st.shard_after.clone());
                    &st.instructions
                }
                ControllerEvent::Send { instructions, .. } => instructions,
                ControllerEvent::Finished { op, state, .. } => {
                    // Instant acks: an operator ends by success or by preemption only.
                    assert!(
                        matches!(
                            state,
                            crate::OperatorState::Succeeded | crate::OperatorState::Cancelled(_)
                        ),
                        "{op}: {state:?}"
                    );
                    if let Some(o) = c.history().find(|o| o.id == *op) {
                        if *state == crate::OperatorState::Succeeded {
                            done.push(o.clone());
                        }
                    }
                    continue;
                }
            };
            for i in instructions {
                if let Some(op) = i.op {
                    c.on_instruction_acked(op, i.node, i.version);
                }
            }
        }
        if quiet && events.is_empty() {
            let view = ClusterView::new(cfg, nodes, shards).with_copysets(Some(fam));
            return Settled {
                view,
                done,
                min_replicas,
            };
        }
    }
    panic!("did not settle");
}

fn copyset_cluster() -> ClusterBuilder {
    ClusterBuilder::new()
        .zones(3)
        .nodes(12)
        .shards(48)
        .copyset(4)
}

fn set_state(view: ClusterView, node: NodeId, state: NodeState) -> ClusterView {
    modify(view, |nodes, _| {
        for n in nodes.iter_mut().filter(|n| n.id == node) {
            n.state = state;
            n.state_since_ms = 0;
        }
    })
}

fn assert_every_shard_inside_a_copyset(view: &ClusterView) {
    let family = view.copysets().expect("family");
    for sv in view.shards() {
        let nodes: Vec<NodeId> = sv.shard.replicas.iter().map(|r| r.node).collect();
        assert_eq!(nodes.len(), 3, "{:?}", sv.shard);
        assert!(family.covers(&nodes), "{:?} is in no copyset", sv.shard);
    }
    assert_eq!(view.copyset_violations(), 0);
}

fn of_kind(done: &[crate::Operator], kind: OperatorKind) -> usize {
    done.iter().filter(|o| o.kind == kind).count()
}

#[test]
fn first_placement_puts_every_shard_inside_a_copyset() {
    let view = copyset_cluster().build();
    assert_every_shard_inside_a_copyset(&view);
}

#[test]
fn repair_replaces_a_dead_replica_with_the_node_that_completes_its_copyset() {
    let view = set_state(copyset_cluster().build(), NodeId(2), NodeState::Offline);
    let mut now = 60_000;
    let out = settle(view, &mut now, Family::Maintained);
    for sv in out.view.shards() {
        assert!(!sv.shard.has_replica_on(NodeId(2)), "{:?}", sv.shard);
    }
    assert_every_shard_inside_a_copyset(&out.view);
    // One copy per lost replica: no detour through a set outside the family.
    assert_eq!(of_kind(&out.done, OperatorKind::CopysetFix), 0);
    assert!(of_kind(&out.done, OperatorKind::ReplicaRepair) > 0);
    assert!(out.min_replicas >= 3);
    assert_eq!(out.view.domain_violations(), 0);
}

#[test]
fn repair_with_no_fitting_copyset_degrades_then_moves_the_shard_into_one_step_by_step() {
    // A family that is never updated: no copyset holds a dead node's substitute, so repair
    // must leave the family for a moment and come back without dropping below RF.
    let view = set_state(copyset_cluster().build(), NodeId(5), NodeState::Offline);
    let mut now = 60_000;
    let out = settle(view, &mut now, Family::Frozen);
    for sv in out.view.shards() {
        assert!(!sv.shard.has_replica_on(NodeId(5)), "{:?}", sv.shard);
    }
    assert_every_shard_inside_a_copyset(&out.view);
    assert!(of_kind(&out.done, OperatorKind::CopysetFix) > 0);
    assert!(out.min_replicas >= 3);
}

#[test]
fn repair_reports_shards_outside_copysets_while_no_copyset_can_take_them() {
    // A whole zone dead, family frozen: every copyset has a dead member, so no shard can be
    // completed inside one. Repair still restores three live replicas, and says so.
    let mut view = copyset_cluster().build();
    let zone0: Vec<NodeId> = view
        .nodes()
        .iter()
        .filter(|n| n.labels.zone == "z0")
        .map(|n| n.id)
        .collect();
    for n in zone0.clone() {
        view = set_state(view, n, NodeState::Offline);
    }
    let mut now = 60_000;
    let out = settle(view, &mut now, Family::Frozen);
    for sv in out.view.shards() {
        assert_eq!(sv.shard.replicas.len(), 3);
        assert!(sv.shard.replicas.iter().all(|r| !zone0.contains(&r.node)));
    }
    assert_eq!(out.view.copyset_violations(), 48);
}

#[test]
fn a_maintained_family_keeps_copysets_after_a_whole_zone_dies() {
    let mut view = copyset_cluster().build();
    let zone0: Vec<NodeId> = view
        .nodes()
        .iter()
        .filter(|n| n.labels.zone == "z0")
        .map(|n| n.id)
        .collect();
    for n in zone0.clone() {
        view = set_state(view, n, NodeState::Offline);
    }
    let mut now = 60_000;
    let out = settle(view, &mut now, Family::Maintained);
    for sv in out.view.shards() {
        assert!(sv.shard.replicas.iter().all(|r| !zone0.contains(&r.node)));
    }
    assert_every_shard_inside_a_copyset(&out.view);
}

#[test]
fn drain_moves_every_replica_to_a_node_that_keeps_its_shard_in_a_copyset() {
    let view = modify(copyset_cluster().build(), |nodes, _| {
        nodes[0].draining = true;
    });
    let drained = view.nodes()[0].id;
    let mut now = 60_000;
    let out = settle(view, &mut now, Family::Maintained);
    for o in &out.done {
        eprintln!("{:?} {:?} {}", o.kind, o.steps, o.reason);
    }
    assert_eq!(out.view.replica_count(drained), 0);
    assert_every_shard_inside_a_copyset(&out.view);
    assert_eq!(of_kind(&out.done, OperatorKind::CopysetFix), 0);
    assert!(out.min_replicas >= 3);
}

#[test]
fn expansion_fills_new_nodes_through_copysets_derived_for_them() {
    let view = ClusterBuilder::new()
        .zones(3)
        .nodes(30)
        .shards(120)
        .copyset(4)
        .empty_nodes(6)
        .build();
    let original: Vec<Vec<NodeId>> = view.copysets().unwrap().sets().to_vec();
    let mut now = 60_000;
    let out = settle(view, &mut now, Family::Maintained);
    assert_every_shard_inside_a_copyset(&out.view);
    // Existing copysets are kept, so no existing replica set became invalid.
    let family = out.view.copysets().unwrap();
    for set in &original {
        assert!(family.covers(set), "{set:?} was dropped");
    }
    // Each new node shares copysets with P = 2 donors (scatter width 4 is kept), so it
    // fills until its donors are down to its level: about P / (P + 1) of the mean, not all
    // of it. Nobody gains replicas but the new nodes.
    let mean = 360 / 36;
    for id in 31..=36 {
        let got = out.view.replica_count(NodeId(id));
        assert!(3 * got >= 2 * mean, "new node {id} got {got} replicas");
    }
    for id in 1..=30 {
        assert!(out.view.replica_count(NodeId(id)) <= 12);
    }
    assert!(of_kind(&out.done, OperatorKind::Expansion) > 0);
    assert_eq!(out.view.domain_violations(), 0);
}

#[test]
fn balance_never_moves_a_replica_out_of_its_copyset() {
    // New nodes with no copyset of their own (a family nobody updated): every move onto them
    // would leave the family, so balance makes none.
    let view = copyset_cluster().empty_nodes(6).build();
    let mut balance = BalanceShardScheduler::new(SchedulerConfig::default());
    assert!(view.spread().shards_max_minus_min >= 3);
    let ops = balance.schedule(&view, 0);
    assert!(ops.is_empty(), "{ops:?}");
}

#[test]
fn hot_node_sheds_load_only_to_a_node_that_keeps_the_shard_in_a_copyset() {
    let mut b = copyset_cluster().empty_nodes(6);
    for s in 0..48 {
        b = b.shard_load(s, 10.0);
    }
    let view = b.build();
    let hot = view.shards()[0].shard.leader().unwrap();
    let zone = view.node(hot).unwrap().labels.zone.clone();
    // Two empty nodes in the hot node's zone; only the second shares a copyset with the
    // rest of shard 0's replicas (as if derived for it at expansion).
    let empty: Vec<NodeId> = (13..=18)
        .map(NodeId)
        .filter(|&n| view.node(n).unwrap().labels.zone == zone)
        .collect();
    let (first, second) = (empty[0], empty[1]);
    let mut sets = view.copysets().unwrap().sets().to_vec();
    let mut derived: Vec<NodeId> = view.shards()[0]
        .shard
        .replicas
        .iter()
        .map(|r| r.node)
        .filter(|&n| n != hot)
        .collect();
    derived.push(second);
    sets.push(derived);
    let family = Arc::new(CopysetFamily::new(sets, 4));
    let view = modify(view, |_, shards| {
        for sv in shards.iter_mut() {
            if sv.shard.leader() == Some(hot) {
                sv.stats.read_units_per_sec = 20.0;
                // No follower may take the leadership: the replica itself must move.
                sv.in_sync.clear();
            }
        }
    })
    .with_copysets(Some(family));
    let mut sched = HotShardScheduler::new(SchedulerConfig::default());
    let _ = sched.schedule(&view, 0);
    let ops = sched.schedule(&view, 60_000);
    assert!(!ops.is_empty());
    for op in &ops {
        let mut s = view.shard(op.shard).unwrap().shard.clone();
        for step in &op.steps {
            s = step.apply(&s).unwrap();
        }
        let nodes: Vec<NodeId> = s.replicas.iter().map(|r| r.node).collect();
        assert!(view.inside_copyset(&nodes), "{op:?}");
        assert!(!s.has_replica_on(first), "{op:?}");
    }
}
