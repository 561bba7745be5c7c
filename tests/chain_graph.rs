//! A chain's steps as a graph: what is refused, the order, and which steps run or
//! are skipped as the others end.

use std::collections::BTreeMap;

use jobqueue::chain::graph::{Decision, Graph, MAX_STEPS, Node, RunIf, State, build};

fn node(id: &str, depends_on: Option<&[&str]>, run_if: RunIf) -> Node {
    Node {
        id: id.into(),
        depends_on: depends_on.map(|d| d.iter().map(|s| s.to_string()).collect()),
        run_if,
    }
}

fn step(id: &str) -> Node {
    node(id, None, RunIf::OnSuccess)
}

/// Runs the graph to its end with the given outcomes for the steps that run;
/// returns every step's final state.
fn run(graph: &Graph, outcomes: &[(&str, State)]) -> BTreeMap<String, State> {
    let outcomes: BTreeMap<&str, State> = outcomes.iter().copied().collect();
    let mut states: BTreeMap<String, State> = graph
        .order
        .iter()
        .map(|id| (id.clone(), State::Waiting))
        .collect();
    loop {
        let Decision { start, skip } = graph.next(&states);
        if start.is_empty() && skip.is_empty() {
            return states;
        }
        for id in skip {
            states.insert(id, State::Skipped);
        }
        for id in start {
            let outcome = outcomes
                .get(id.as_str())
                .copied()
                .unwrap_or(State::Succeeded);
            states.insert(id, outcome);
        }
    }
}

#[test]
fn a_plain_list_is_a_pipeline() {
    let graph = build(&[step("fetch"), step("transform"), step("store")]).unwrap();
    assert_eq!(graph.order, ["fetch", "transform", "store"]);
    assert_eq!(graph.parents["store"], ["transform"]);
    assert!(graph.parents["fetch"].is_empty());
    assert!(graph.is_ancestor("fetch", "store"));
    assert!(!graph.is_ancestor("store", "fetch"));
    let mut states: BTreeMap<String, State> = graph
        .order
        .iter()
        .map(|id| (id.clone(), State::Waiting))
        .collect();
    assert_eq!(graph.next(&states).start, ["fetch"]);
    states.insert("fetch".into(), State::Running);
    assert_eq!(
        graph.next(&states),
        Decision::default(),
        "nothing while it runs"
    );
}

#[test]
fn independent_steps_run_side_by_side_and_a_join_waits_for_all() {
    let graph = build(&[
        step("split"),
        node("left", Some(&["split"]), RunIf::OnSuccess),
        node("right", Some(&["split"]), RunIf::OnSuccess),
        node("join", Some(&["left", "right"]), RunIf::OnSuccess),
    ])
    .unwrap();
    let mut states: BTreeMap<String, State> = graph
        .order
        .iter()
        .map(|id| (id.clone(), State::Waiting))
        .collect();
    states.insert("split".into(), State::Succeeded);
    assert_eq!(graph.next(&states).start, ["left", "right"]);
    states.insert("left".into(), State::Succeeded);
    states.insert("right".into(), State::Running);
    assert!(graph.next(&states).start.is_empty(), "join waits for right");
    states.insert("right".into(), State::Succeeded);
    assert_eq!(graph.next(&states).start, ["join"]);
    assert!(!graph.is_ancestor("left", "right"));
}

#[test]
fn bad_graphs_are_refused_naming_each_step_and_field() {
    let errors = build(&[
        step("a"),
        step("a"),
        node("b", Some(&["nope"]), RunIf::OnSuccess),
    ])
    .unwrap_err();
    let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(fields, ["steps[1].id", "steps[2].depends_on[0]"]);
    let errors = build(&[node("a", Some(&["a"]), RunIf::OnSuccess)]).unwrap_err();
    assert_eq!(errors[0].field, "steps[0].depends_on[0]");
    let errors = build(&[
        node("a", Some(&["c"]), RunIf::OnSuccess),
        node("b", Some(&["a"]), RunIf::OnSuccess),
        node("c", Some(&["b"]), RunIf::OnSuccess),
    ])
    .unwrap_err();
    assert!(errors[0].message.contains("cycle"), "{errors:?}");
    assert!(errors[0].message.contains("a, b, c"), "{errors:?}");
    for bad in ["", "Upper", "9lives", "has space", &"x".repeat(64)] {
        let errors = build(&[step(bad)]).unwrap_err();
        assert_eq!(errors[0].field, "steps[0].id", "{bad:?}");
    }
    assert_eq!(build(&[]).unwrap_err()[0].field, "steps");
    let many: Vec<Node> = (0..=MAX_STEPS).map(|i| step(&format!("s{i}"))).collect();
    assert!(build(&many).unwrap_err()[0].message.contains("at most"));
}

#[test]
fn a_failure_skips_what_needed_it_and_reaches_failure_and_always_steps() {
    let graph = build(&[
        step("fetch"),
        step("transform"),
        step("store"),
        node("alert", Some(&["store"]), RunIf::OnFailure),
        node("cleanup", Some(&["store"]), RunIf::Always),
        node("after_alert", Some(&["alert"]), RunIf::OnSuccess),
        node("audit", Some(&["transform"]), RunIf::OnSuccess),
    ])
    .unwrap();
    // transform fails: store and audit (which needed it) are skipped; the failure
    // passes through the skipped store to the alert; cleanup runs anyway.
    let states = run(&graph, &[("transform", State::Failed)]);
    assert_eq!(states["fetch"], State::Succeeded);
    assert_eq!(states["transform"], State::Failed);
    assert_eq!(states["store"], State::Skipped);
    assert_eq!(states["audit"], State::Skipped);
    assert_eq!(states["alert"], State::Succeeded, "the alert ran");
    assert_eq!(states["after_alert"], State::Succeeded);
    assert_eq!(states["cleanup"], State::Succeeded);

    // Nothing fails: the alert is skipped, and so is what needed it; cleanup runs.
    let states = run(&graph, &[]);
    assert_eq!(states["alert"], State::Skipped);
    assert_eq!(states["after_alert"], State::Skipped);
    assert_eq!(states["cleanup"], State::Succeeded);
    assert_eq!(states["audit"], State::Succeeded);

    // The failure step itself fails: what needed it is skipped.
    let states = run(
        &graph,
        &[("store", State::Failed), ("alert", State::Failed)],
    );
    assert_eq!(states["after_alert"], State::Skipped);
    assert_eq!(states["cleanup"], State::Succeeded);
}

#[test]
fn a_skipped_failure_step_passes_no_failure_on() {
    let graph = build(&[
        step("work"),
        node("on_error", Some(&["work"]), RunIf::OnFailure),
        node("second_alarm", Some(&["on_error"]), RunIf::OnFailure),
        node("finally", Some(&["on_error"]), RunIf::Always),
    ])
    .unwrap();
    let states = run(&graph, &[]);
    assert_eq!(states["on_error"], State::Skipped);
    assert_eq!(
        states["second_alarm"],
        State::Skipped,
        "no failure came from above"
    );
    assert_eq!(states["finally"], State::Succeeded);
}
