use meridian_sim::scenario::*;
#[test]
fn dbg() {
    let r = run_scenario(
        "rolling-restart",
        &ScenarioOptions {
            seed: 1,
            small: true,
            ..Default::default()
        },
    )
    .unwrap();
    println!("{}", r.render_human());
}
