//! Scheduler behaviour, specified through small clusters and a tiny executor.

use super::*;
use crate::controller::{ControllerConfig, ControllerEvent, OperatorController};
use crate::operator::{OperatorKind, Step};
use crate::testing::{modify, ClusterBuilder};
use crate::view::{NodeView, ShardView};
use meridian_model::{NodeId, NodeState, ReplicaRole};

fn kill(view: ClusterView, node: NodeId, since: u64) -> ClusterView {
    modify(view, |nodes, _| {
        for n in nodes.iter_mut().filter(|n| n.id == node) {
            n.state = NodeState::Offline;
            n.state_since_ms = since;
        }
    })
}

/// Runs schedulers and controller against `view` with instant, always-acknowledged
/// instructions until nothing is proposed or running. Returns the final view and the
/// operators that succeeded.
fn settle(view: ClusterView, now: &mut u64) -> (ClusterView, Vec<crate::Operator>) {
    let mut set = SchedulerSet::new(SchedulerConfig::default());
    let config = ControllerConfig::default();
    let mut c = OperatorController::new(config);
    let (cfg, nodes, mut shards) = view.into_parts();
    let mut done = Vec::new();
    for _ in 0..20_000 {
        *now += 100;
        let view = ClusterView::new(cfg.clone(), nodes.clone(), shards.clone())
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
                    let sv = shards
                        .iter_mut()
                        .find(|s| s.shard.id == st.shard_after.id)
                        .expect("known shard");
                    let stats = sv.stats;
                    *sv = ShardView::all_in_sync(st.shard_after.clone());
                    sv.stats = stats;
                    &st.instructions
                }
                ControllerEvent::Send { instructions, .. } => instructions,
                ControllerEvent::Finished { op, state, .. } => {
                    assert_eq!(*state, crate::OperatorState::Succeeded, "{op}");
                    if let Some(o) = c.history().find(|o| o.id == *op) {
                        done.push(o.clone());
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
            return (ClusterView::new(cfg, nodes, shards), done);
        }
    }
    panic!("did not settle");
}

#[test]
fn failover_promotes_in_sync_follower_within_one_tick() {
    let view = ClusterBuilder::new().zones(3).nodes(6).shards(12).build();
    let dead = NodeId(1);
    let led: Vec<_> = view
        .shards()
        .iter()
        .filter(|s| s.shard.leader() == Some(dead))
        .map(|s| s.shard.id)
        .collect();
    assert!(!led.is_empty());
    let view = kill(view, dead, 5_000);
    let mut set = SchedulerSet::new(SchedulerConfig::default());
    let mut c = OperatorController::new(ControllerConfig::default());
    // One tick: schedule, admit, advance.
    for op in set.schedule(&view, 5_000) {
        c.try_add(op).unwrap();
    }
    let events = c.tick(5_000, &mut |id| view.shard(id).map(|s| s.shard.clone()));
    let mut new_leaders = Vec::new();
    for id in &led {
        let st = events
            .iter()
            .find_map(|e| match e {
                ControllerEvent::StepStarted(st) if st.shard_after.id == *id => Some(st),
                _ => None,
            })
            .expect("a step started for every shard the dead node led");
        assert_eq!(st.kind, OperatorKind::Failover);
        let to = st.shard_after.leader().unwrap();
        assert!(view.shard(*id).unwrap().is_in_sync(to));
        assert_eq!(view.node(to).unwrap().state, NodeState::Online);
        assert!(matches!(st.step, Step::PromoteFollower { .. }));
        new_leaders.push(to);
    }
    // The promotions go to distinct nodes while they have equal leader counts.
    new_leaders.sort();
    new_leaders.dedup();
    assert!(new_leaders.len() >= 2.min(led.len()));
}

#[test]
fn failover_waits_while_the_leader_is_only_suspect() {
    let view = ClusterBuilder::new()
        .zones(3)
        .nodes(3)
        .shards(3)
        .node_state(NodeId(1), NodeState::Suspect, 0)
        .build();
    assert!(FailoverScheduler::new(SchedulerConfig::default())
        .schedule(&view, 10)
        .is_empty());
}

#[test]
fn failover_reopens_the_shard_on_shared_storage_when_no_follower_is_in_sync() {
    let view = ClusterBuilder::new()
        .zones(3)
        .nodes(3)
        .shards(3)
        .no_in_sync()
        .shared_storage(true)
        .build();
    let view = kill(view, NodeId(1), 0);
    let ops = FailoverScheduler::new(SchedulerConfig::default()).schedule(&view, 10);
    assert!(!ops.is_empty());
    for op in ops {
        let Step::ReopenShard { on } = op.steps[0] else {
            panic!("{op:?}")
        };
        assert_ne!(on, NodeId(1));
    }
}

#[test]
fn repair_waits_for_the_delay_then_replaces_the_dead_replica_in_its_zone() {
    let view = ClusterBuilder::new().zones(3).nodes(6).shards(12).build();
    let view = kill(view, NodeId(2), 0);
    let mut repair = ReplicaRepairScheduler::new(SchedulerConfig::default());
    assert!(repair.schedule(&view, 29_999).is_empty());
    let ops = repair.schedule(&view, 30_000);
    let followers_on_dead = view
        .shards()
        .iter()
        .filter(|s| s.shard.role_of(NodeId(2)) == Some(ReplicaRole::Follower))
        .count();
    assert_eq!(ops.len(), followers_on_dead);
    for op in ops {
        let [Step::AddFollower { node }, Step::RemoveReplica { node: gone }] = op.steps[..] else {
            panic!("{op:?}")
        };
        assert_eq!(gone, NodeId(2));
        // Zone z1 is the only one the shard's survivors do not use.
        assert_eq!(view.node(node).unwrap().labels.zone, "z1");
    }
}

#[test]
fn balanced_cluster_makes_no_moves() {
    let view = ClusterBuilder::new().zones(3).nodes(9).shards(24).build();
    let spread = view.spread();
    assert!(spread.shards_max_minus_min <= 1 && spread.leaders_max_minus_min <= 1);
    let mut set = SchedulerSet::new(SchedulerConfig::default());
    for now in [0, 100, 200] {
        assert!(set.schedule(&view, now).is_empty());
    }
}

#[test]
fn a_spread_of_two_is_left_alone_by_hysteresis() {
    let config = SchedulerConfig::default();
    let view = ClusterBuilder::new()
        .zones(3)
        .nodes(3)
        .shards(6)
        .empty_nodes(0)
        .build();
    // Move one leadership by hand: leader spread becomes 2.
    let view = modify(view, |_, shards| {
        let s = &mut shards[0].shard;
        let to = s.followers().next().unwrap();
        *s = Step::TransferLeader {
            from: s.leader().unwrap(),
            to,
        }
        .apply(s)
        .unwrap();
        shards[0] = ShardView::all_in_sync(shards[0].shard.clone());
    });
    assert_eq!(view.spread().leaders_max_minus_min, 2);
    assert!(BalanceLeaderScheduler::new(config)
        .schedule(&view, 0)
        .is_empty());
}

#[test]
fn new_empty_nodes_receive_shards_until_even() {
    let view = ClusterBuilder::new()
        .zones(3)
        .nodes(6)
        .empty_nodes(3)
        .shards(60)
        .build();
    let before = view.spread();
    assert!(before.shards_max_minus_min >= 20);
    let mut now = 0;
    let (after, done) = settle(view, &mut now);
    let spread = after.spread();
    assert!(spread.shards_max_minus_min <= 1, "{spread:?}");
    assert!(spread.leaders_max_minus_min <= 1, "{spread:?}");
    assert_eq!(after.domain_violations(), 0);
    // 180 replicas over 9 nodes: each new node needs 20, so 60 moves at least.
    let moves = done
        .iter()
        .filter(|o| matches!(o.kind, OperatorKind::Expansion | OperatorKind::BalanceShard))
        .count();
    assert!((60..=66).contains(&moves), "{moves} moves");
    for s in after.shards() {
        s.shard.check().unwrap();
        assert_eq!(s.shard.replicas.len(), 3);
    }
}

#[test]
fn dead_node_is_replaced_and_cluster_settles_even() {
    let view = ClusterBuilder::new().zones(3).nodes(9).shards(36).build();
    let view = kill(view, NodeId(4), 0);
    let mut now = 60_000;
    let (after, _) = settle(view, &mut now);
    for s in after.shards() {
        assert!(!s.shard.has_replica_on(NodeId(4)), "{:?}", s.shard);
        assert_eq!(s.shard.replicas.len(), 3);
        assert_ne!(s.shard.leader(), None);
    }
    assert_eq!(after.domain_violations(), 0);
    // Zone isolation puts one replica of every shard in each zone, so the dead node's zone
    // mates take 18 each while other nodes keep 12; within each zone counts stay even.
    for zone in ["z0", "z1", "z2"] {
        let counts: Vec<u32> = after
            .nodes()
            .iter()
            .filter(|n| n.labels.zone == zone && n.state == NodeState::Online)
            .map(|n| after.replica_count(n.id))
            .collect();
        let spread = counts.iter().max().unwrap() - counts.iter().min().unwrap();
        assert!(spread <= 1, "{zone}: {counts:?}");
    }
}

#[test]
fn draining_node_hands_over_leaders_first_then_empties() {
    let view = ClusterBuilder::new().zones(3).nodes(6).shards(24).build();
    let view = modify(view, |nodes, _| nodes[0].draining = true);
    let drained = NodeId(1);
    let mut drain = DrainScheduler::new(SchedulerConfig::default());
    let first = drain.schedule(&view, 0);
    assert!(!first.is_empty());
    assert!(first
        .iter()
        .all(|o| matches!(o.steps[..], [Step::TransferLeader { from, .. }] if from == drained)));
    let mut now = 0;
    let (after, _) = settle(view, &mut now);
    assert_eq!(after.shards_on(drained).count(), 0);
    assert_eq!(after.domain_violations(), 0);
}

#[test]
fn hot_node_sheds_load_after_it_stayed_hot_and_never_makes_a_new_hot_spot() {
    let base = ClusterBuilder::new().zones(3).nodes(6).shards(60);
    let probe = base.build();
    let hot_node = probe.shards()[0].shard.leader().unwrap();
    let led: Vec<u32> = probe
        .shards()
        .iter()
        .filter(|s| s.shard.leader() == Some(hot_node))
        .map(|s| s.shard.id.0)
        .collect();
    let mut b = base;
    for s in 0..60 {
        b = b.shard_load(s, 10.0);
    }
    for &s in &led[..3] {
        b = b.shard_load(s, 40.0);
    }
    let view = b.build();
    let line = 1.25 * (600.0 + 90.0) / 6.0;
    assert!(view.leader_load(hot_node) > line);
    let config = SchedulerConfig::default();
    let mut hot = HotShardScheduler::new(config);
    assert!(
        hot.schedule(&view, 0).is_empty(),
        "not hot for long enough yet"
    );
    let ops = hot.schedule(&view, config.hot_sustain_ms);
    assert_eq!(ops.len(), 1, "{ops:?}");
    let op = &ops[0];
    assert_eq!(op.kind, OperatorKind::HotShard);
    assert!(led[..3].contains(&op.shard.0), "hottest first");
    let Step::TransferLeader { to, .. } = op.steps[0] else {
        panic!("{op:?}")
    };
    assert!(
        view.leader_load(to) + 40.0 <= line,
        "the receiver stays under the line"
    );
    // Cooldown: the same shard is not proposed again right away.
    assert!(hot
        .schedule(&view, config.hot_sustain_ms + 1_000)
        .iter()
        .all(|o| o.shard != op.shard));
}

#[test]
fn a_shard_hotter_than_the_line_by_itself_is_never_moved_for_load() {
    let mut b = ClusterBuilder::new().zones(3).nodes(6).shards(60);
    for s in 0..60 {
        b = b.shard_load(s, 10.0);
    }
    let view = b.shard_load(0, 1000.0).build();
    let mut hot = HotShardScheduler::new(SchedulerConfig::default());
    for now in [0, 30_000, 60_000] {
        // Its node sheds its other shards instead.
        assert!(hot.schedule(&view, now).iter().all(|o| o.shard.0 != 0));
    }
}

#[test]
fn maintenance_mode_runs_only_failover_and_repair() {
    let view = ClusterBuilder::new()
        .zones(3)
        .nodes(6)
        .empty_nodes(3)
        .shards(30)
        .build();
    let view = kill(view, NodeId(1), 0);
    let mut set = SchedulerSet::new(SchedulerConfig::default());
    set.set_maintenance(true);
    let ops = set.schedule(&view, 100);
    assert!(!ops.is_empty());
    assert!(ops.iter().all(|o| o.kind == OperatorKind::Failover));
    set.set_maintenance(false);
    assert!(set
        .schedule(&view, 200)
        .iter()
        .any(|o| o.kind == OperatorKind::Expansion));
}

#[test]
fn schedulers_pause_and_resume_by_name() {
    let view = ClusterBuilder::new()
        .zones(3)
        .nodes(3)
        .empty_nodes(3)
        .shards(30)
        .build();
    let mut set = SchedulerSet::new(SchedulerConfig::default());
    set.pause("balance-shard").unwrap();
    assert!(set.schedule(&view, 0).is_empty());
    assert!(set
        .status()
        .iter()
        .any(|s| s.name == "balance-shard" && s.paused));
    set.resume("balance-shard").unwrap();
    assert!(!set.schedule(&view, 100).is_empty());
    assert!(set.pause("nope").is_err());
}

#[test]
fn cordoned_and_draining_nodes_never_receive() {
    let view = ClusterBuilder::new()
        .zones(3)
        .nodes(6)
        .empty_nodes(3)
        .shards(30)
        .build();
    let view = modify(view, |nodes: &mut Vec<NodeView>, _| {
        nodes[6].cordoned = true;
        nodes[7].draining = true;
    });
    let ops = SchedulerSet::new(SchedulerConfig::default()).schedule(&view, 0);
    assert!(!ops.is_empty());
    for op in ops {
        for step in &op.steps {
            if let Step::AddFollower { node } = step {
                assert!(*node != NodeId(7) && *node != NodeId(8), "{op:?}");
            }
        }
    }
}

/// Hands leadership of some shard led by `from` to its follower on `to`.
fn transfer(shards: &mut [ShardView], from: NodeId, to: NodeId) {
    let sv = shards
        .iter_mut()
        .find(|s| s.shard.leader() == Some(from) && s.shard.role_of(to).is_some())
        .expect("a shard led by `from` with a follower on `to`");
    let next = Step::TransferLeader { from, to }.apply(&sv.shard).unwrap();
    *sv = ShardView::all_in_sync(next);
}

#[test]
fn leader_balance_chains_transfers_when_zones_forbid_the_direct_one() {
    // Node 2 and node 5 share zone z1, so no shard has replicas on both: moving a
    // leadership from 5 to 2 takes a detour through another zone.
    let view = ClusterBuilder::new().zones(3).nodes(6).shards(48).build();
    let view = modify(view, |_, shards| {
        for _ in 0..2 {
            transfer(shards, NodeId(2), NodeId(1));
            transfer(shards, NodeId(1), NodeId(5));
        }
    });
    assert_eq!(view.leader_count(NodeId(5)), 10);
    assert_eq!(view.leader_count(NodeId(2)), 6);
    let ops = BalanceLeaderScheduler::new(SchedulerConfig::default()).schedule(&view, 0);
    assert!(ops.len() >= 2, "{ops:?}");
    let ends: Vec<(NodeId, NodeId)> = ops
        .iter()
        .map(|o| match o.steps[..] {
            [Step::TransferLeader { from, to }] => (from, to),
            _ => panic!("{o:?}"),
        })
        .collect();
    assert_eq!(ends[0].0, NodeId(5));
    assert_eq!(ends[1].1, NodeId(2));
    assert_eq!(
        ends[0].1, ends[1].0,
        "one chain through a node of another zone"
    );
    let mut now = 0;
    let (after, _) = settle(view, &mut now);
    assert!(after.spread().leaders_max_minus_min <= 1);
}

// ---- leader eviction (planned restart) ----

/// Sets the evict-leaders flag of `node`.
fn evict(view: ClusterView, node: NodeId) -> ClusterView {
    modify(view, |nodes, _| {
        for n in nodes.iter_mut().filter(|n| n.id == node) {
            n.evict_leaders = true;
        }
    })
}

/// Leadership transfers of `ops` as (from, to).
fn transfers(ops: &[crate::Operator]) -> Vec<(NodeId, NodeId)> {
    ops.iter()
        .flat_map(|o| &o.steps)
        .filter_map(|s| match *s {
            Step::TransferLeader { from, to } => Some((from, to)),
            _ => None,
        })
        .collect()
}

#[test]
fn evict_leader_moves_every_leadership_off_the_node() {
    let view = ClusterBuilder::new().zones(3).nodes(6).shards(24).build();
    let evicted = NodeId(1);
    let led = view.leader_count(evicted);
    assert!(led > 0);
    let view = evict(view, evicted);
    let ops = EvictLeaderScheduler::new(SchedulerConfig::default()).schedule(&view, 0);
    assert_eq!(ops.len(), led as usize, "one transfer per shard it leads");
    for op in &ops {
        assert_eq!(op.kind, OperatorKind::EvictLeader);
        assert_eq!(op.priority, crate::Priority::Maintenance);
        let [Step::TransferLeader { from, to }] = op.steps[..] else {
            panic!("{op:?}")
        };
        assert_eq!(from, evicted);
        assert!(view.shard(op.shard).unwrap().is_in_sync(to));
    }
    let mut now = 0;
    let (after, _) = settle(view, &mut now);
    assert_eq!(after.leader_count(evicted), 0);
    assert!(
        after.spread().leaders_max_minus_min <= 1,
        "{:?}",
        after.spread()
    );
    for s in after.shards() {
        assert!(s.shard.leader().is_some());
    }
}

#[test]
fn evict_leader_respects_the_per_tick_cap_and_node_limits() {
    let view = ClusterBuilder::new().zones(3).nodes(6).shards(48).build();
    let view = evict(view, NodeId(1));
    let config = SchedulerConfig {
        max_ops_per_tick: 3,
        ..SchedulerConfig::default()
    };
    assert_eq!(
        EvictLeaderScheduler::new(config).schedule(&view, 0).len(),
        3
    );
    // With the controller's per-node limit of 2, the evicting node takes two at a time.
    let view = {
        let (cfg, nodes, shards) = view.into_parts();
        ClusterView::new(cfg, nodes, shards).with_operators([], Some(2))
    };
    let ops = EvictLeaderScheduler::new(SchedulerConfig::default()).schedule(&view, 0);
    assert_eq!(ops.len(), 2, "{ops:?}");
}

#[test]
fn evicting_node_keeps_its_followers() {
    let view = ClusterBuilder::new().zones(3).nodes(6).shards(24).build();
    let evicted = NodeId(2);
    let held: Vec<_> = view.shards_on(evicted).map(|s| s.shard.id).collect();
    let view = evict(view, evicted);
    let mut now = 0;
    let (after, done) = settle(view, &mut now);
    let still: Vec<_> = after.shards_on(evicted).map(|s| s.shard.id).collect();
    assert_eq!(held, still, "every replica stays where it was");
    assert_eq!(after.leader_count(evicted), 0);
    assert!(done
        .iter()
        .all(|o| matches!(o.steps[..], [Step::TransferLeader { .. }])));
}

#[test]
fn evicting_node_still_receives_followers_but_no_leader() {
    // Node 7 is new and empty: shard balance fills it, with followers only.
    let view = ClusterBuilder::new()
        .zones(3)
        .nodes(6)
        .empty_nodes(3)
        .shards(60)
        .build();
    let view = evict(view, NodeId(7));
    let mut now = 0;
    let (after, done) = settle(view, &mut now);
    assert!(after.replica_count(NodeId(7)) >= 19, "it filled up");
    assert_eq!(after.leader_count(NodeId(7)), 0);
    assert!(transfers(&done).iter().all(|&(_, to)| to != NodeId(7)));
    let spread = after.spread();
    assert!(spread.shards_max_minus_min <= 1, "{spread:?}");
    assert!(spread.leaders_max_minus_min <= 1, "{spread:?}");
}

#[test]
fn an_evicting_node_is_left_out_of_the_leader_spread_only() {
    let view = ClusterBuilder::new().zones(3).nodes(6).shards(24).build();
    let view = evict(view, NodeId(3));
    let node = view.node(NodeId(3)).unwrap();
    assert!(node.can_receive() && !node.can_lead());
    assert!(node.is_balance_member() && !node.is_leader_balance_member());
    // Take its leaders away by hand: the leader spread ignores its count of zero.
    let view = modify(view, |_, shards| {
        for sv in shards.iter_mut() {
            if sv.shard.leader() == Some(NodeId(3)) {
                let to = sv.shard.followers().next().unwrap();
                let next = Step::TransferLeader {
                    from: NodeId(3),
                    to,
                }
                .apply(&sv.shard)
                .unwrap();
                *sv = ShardView::all_in_sync(next);
            }
        }
    });
    assert_eq!(view.leader_count(NodeId(3)), 0);
    let others: Vec<u32> = view
        .nodes()
        .iter()
        .filter(|n| n.id != NodeId(3))
        .map(|n| view.leader_count(n.id))
        .collect();
    let expected = others.iter().max().unwrap() - others.iter().min().unwrap();
    assert_eq!(view.spread().leaders_max_minus_min, expected);
}

#[test]
fn balance_never_gives_leaders_to_an_evicting_node() {
    // Node 2 (zone z1) hands every leadership to its zone-z0 follower (node 1 or 4): it
    // leads nothing and nodes 1 and 4 lead too much.
    let view = ClusterBuilder::new().zones(3).nodes(6).shards(48).build();
    let view = modify(view, |_, shards| {
        for sv in shards.iter_mut() {
            if sv.shard.leader() == Some(NodeId(2)) {
                let to = [NodeId(1), NodeId(4)]
                    .into_iter()
                    .find(|&n| sv.shard.has_replica_on(n))
                    .unwrap();
                let next = Step::TransferLeader {
                    from: NodeId(2),
                    to,
                }
                .apply(&sv.shard)
                .unwrap();
                *sv = ShardView::all_in_sync(next);
            }
        }
    });
    assert_eq!(view.leader_count(NodeId(2)), 0);
    let config = SchedulerConfig::default();
    // Without the flag, balance hands it leaderships...
    let ops = BalanceLeaderScheduler::new(config).schedule(&view, 0);
    assert!(transfers(&ops).iter().any(|&(_, to)| to == NodeId(2)));
    // ...with it, never, and the rest still even out.
    let view = evict(view, NodeId(2));
    let ops = BalanceLeaderScheduler::new(config).schedule(&view, 0);
    assert!(!ops.is_empty(), "node 1 still has too many");
    assert!(transfers(&ops).iter().all(|&(_, to)| to != NodeId(2)));
    let mut now = 0;
    let (after, done) = settle(view, &mut now);
    assert!(transfers(&done).iter().all(|&(_, to)| to != NodeId(2)));
    assert_eq!(after.leader_count(NodeId(2)), 0);
    assert!(after.spread().leaders_max_minus_min <= 1);
}

#[test]
fn hot_shard_never_moves_leadership_to_an_evicting_node() {
    let base = ClusterBuilder::new().zones(3).nodes(6).shards(60);
    let probe = base.build();
    let hot_node = probe.shards()[0].shard.leader().unwrap();
    let led: Vec<u32> = probe
        .shards()
        .iter()
        .filter(|s| s.shard.leader() == Some(hot_node))
        .map(|s| s.shard.id.0)
        .collect();
    let mut b = base;
    for s in 0..60 {
        b = b.shard_load(s, 10.0);
    }
    for &s in &led[..3] {
        b = b.shard_load(s, 40.0);
    }
    let view = b.build();
    let config = SchedulerConfig::default();
    let mut hot = HotShardScheduler::new(config);
    assert!(hot.schedule(&view, 0).is_empty());
    let ops = hot.schedule(&view, config.hot_sustain_ms);
    let (_, preferred) = transfers(&ops)[0];
    // Flag the receiver it chose: it picks another.
    let view = evict(view, preferred);
    let mut hot = HotShardScheduler::new(config);
    hot.schedule(&view, 0);
    let ops = hot.schedule(&view, config.hot_sustain_ms);
    assert!(!ops.is_empty());
    for (_, to) in transfers(&ops) {
        assert!(view.node(to).unwrap().can_lead(), "{to}");
    }
}

#[test]
fn failover_avoids_an_evicting_node_when_another_follower_is_in_sync() {
    let view = ClusterBuilder::new().zones(3).nodes(6).shards(24).build();
    let dead = NodeId(1);
    let sv = view
        .shards()
        .iter()
        .find(|s| s.shard.leader() == Some(dead))
        .unwrap()
        .clone();
    let followers: Vec<NodeId> = sv.shard.followers().collect();
    // Flag every follower the leader-count rank would pick first, one at a time.
    for &flagged in &followers {
        let v = kill(evict(view.clone(), flagged), dead, 0);
        let ops = FailoverScheduler::new(SchedulerConfig::default()).schedule(&v, 10);
        let op = ops.iter().find(|o| o.shard == sv.shard.id).unwrap();
        let [Step::PromoteFollower { to }] = op.steps[..] else {
            panic!("{op:?}")
        };
        assert_ne!(to, flagged);
    }
}

#[test]
fn failover_falls_back_to_an_evicting_node_when_it_holds_the_only_in_sync_follower() {
    let view = ClusterBuilder::new().zones(3).nodes(6).shards(24).build();
    let dead = NodeId(1);
    let id = view
        .shards()
        .iter()
        .find(|s| s.shard.leader() == Some(dead))
        .unwrap()
        .shard
        .id;
    let only = view.shard(id).unwrap().shard.followers().next().unwrap();
    let view = modify(view, |_, shards| {
        let sv = shards.iter_mut().find(|s| s.shard.id == id).unwrap();
        sv.in_sync = vec![only];
    });
    let view = kill(evict(view, only), dead, 0);
    let ops = FailoverScheduler::new(SchedulerConfig::default()).schedule(&view, 10);
    let op = ops.iter().find(|o| o.shard == id).unwrap();
    assert_eq!(op.steps[..], [Step::PromoteFollower { to: only }]);
}

#[test]
fn drain_hands_leaders_only_to_nodes_that_can_lead() {
    let view = ClusterBuilder::new().zones(3).nodes(6).shards(24).build();
    let view = modify(view, |nodes, _| nodes[0].draining = true);
    let view = evict(view, NodeId(2));
    let view = evict(view, NodeId(3));
    let ops = DrainScheduler::new(SchedulerConfig::default()).schedule(&view, 0);
    assert!(!ops.is_empty());
    for (_, to) in transfers(&ops) {
        assert!(to != NodeId(2) && to != NodeId(3), "{to}");
    }
}

#[test]
fn evict_leader_runs_in_maintenance_mode() {
    let view = ClusterBuilder::new().zones(3).nodes(6).shards(24).build();
    let view = evict(view, NodeId(4));
    let mut set = SchedulerSet::new(SchedulerConfig::default());
    set.set_maintenance(true);
    let ops = set.schedule(&view, 0);
    assert!(!ops.is_empty());
    assert!(ops.iter().all(|o| o.kind == OperatorKind::EvictLeader));
    assert!(set
        .status()
        .iter()
        .any(|s| s.name == "evict-leader" && s.essential));
}

#[test]
fn node_view_copies_the_evict_flag_from_the_model() {
    let view = ClusterBuilder::new().zones(3).nodes(3).shards(3).build();
    let n = &view.nodes()[0];
    let node = meridian_model::Node {
        cluster: meridian_model::ClusterId(1),
        id: n.id,
        name: "n1".into(),
        endpoint: "n1:1".into(),
        labels: n.labels.clone(),
        capacity: Default::default(),
        version: "test".into(),
        cordoned: false,
        draining: false,
        removed: false,
        evict_leaders: true,
    };
    let v = NodeView::from_node(&node, NodeState::Online, 0, Default::default());
    assert!(v.evict_leaders && !v.can_lead() && v.can_receive());
    assert!(!NodeView::new(n.id, n.labels.clone()).evict_leaders);
}

#[test]
fn a_spike_in_one_report_is_not_a_hot_node_when_the_trend_is_even() {
    // The last reports make one node hot; the recent averages say every shard carries 10.
    let base = ClusterBuilder::new().zones(3).nodes(6).shards(60);
    let probe = base.build();
    let hot_node = probe.shards()[0].shard.leader().unwrap();
    let mut b = base;
    for s in 0..60 {
        let spiking = probe.shards()[s as usize].shard.leader() == Some(hot_node);
        b = b.shard_load(s, if spiking { 40.0 } else { 10.0 });
    }
    let spiky = b.build();
    let config = SchedulerConfig::default();
    let mut by_report = HotShardScheduler::new(config);
    by_report.schedule(&spiky, 0);
    assert!(!by_report.schedule(&spiky, config.hot_sustain_ms).is_empty());

    let history = {
        let mut h = crate::history::History::new(1000);
        for t in 0..30u64 {
            let samples: Vec<(String, f64)> = spiky
                .shards()
                .iter()
                .map(|sv| (format!("shard/{}/load", sv.shard.id.0), 10.0))
                .collect();
            h.record(t * 1000, samples);
        }
        h
    };
    let trended = spiky.with_load_trend(|sv| {
        history.mean_over(&format!("shard/{}/load", sv.shard.id.0), 30_000, 29_000)
    });
    let mut by_trend = HotShardScheduler::new(config);
    by_trend.schedule(&trended, 0);
    assert!(by_trend
        .schedule(&trended, config.hot_sustain_ms)
        .is_empty());
}
