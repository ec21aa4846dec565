//! Cost of one full scheduling pass (what the server's tick does when it runs every
//! scheduler): building the view and running the standard scheduler set, on a balanced
//! cluster (the common case: nothing to do) of growing size.
//!
//! `cargo bench -p meridian-scheduler --bench full_pass`

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use meridian_scheduler::testing::ClusterBuilder;
use meridian_scheduler::{ClusterView, SchedulerConfig, SchedulerSet};

fn full_pass(c: &mut Criterion) {
    let mut group = c.benchmark_group("full_pass");
    group.sample_size(10);
    for (nodes, shards) in [(30, 1_000), (300, 10_000), (2_000, 33_334)] {
        let view = ClusterBuilder::new()
            .zones(3)
            .nodes(nodes)
            .shards(shards)
            .build();
        let (config, node_views, shard_views) = view.into_parts();
        group.bench_with_input(
            BenchmarkId::new("view_and_schedule", format!("{nodes}n_{shards}s")),
            &(config, node_views, shard_views),
            |b, (config, nodes, shards)| {
                let mut set = SchedulerSet::new(SchedulerConfig::default());
                let mut now = 0;
                b.iter(|| {
                    now += 1_000;
                    let view = ClusterView::new(config.clone(), nodes.clone(), shards.clone());
                    set.schedule(&view, now)
                });
            },
        );
    }
    group.finish();
}

criterion_group!(benches, full_pass);
criterion_main!(benches);
