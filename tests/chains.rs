//! Chains through the real server, against a real target: data passed from step
//! to step with its types, fan-out and join, the wiring refused at submit with
//! its pointers, the dry run, contracts checked on the real data while a chain
//! runs, failure steps, cancel, retry, pinned contract versions, and progress that
//! survives kill -9.

mod common;

use std::time::{Duration, Instant};

use common::chains::*;
use common::*;
use jobqueue::proto::{self, ChainStatus, StepStatus};
use serde_json::{Value, json};
use tonic::Code;

const SOON: Duration = Duration::from_secs(15);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_step_pipeline_passes_data_along_with_types_kept() {
    let target = Target::start().await.unwrap();
    let server = Server::start().await;
    let mut client = chains(server.addr).await;
    let user = json!({"user": {"id": 7, "name": "Ada Lovelace", "tags": ["x", "y"], "score": 2.5}});
    let mut b = with_body(
        step(
            "enrich",
            "POST",
            target.url("/b/{{ steps.fetch.output.body.user.id }}?echo=1"),
        ),
        json!({
            "id": "{{ steps.fetch.output.body.user.id }}",
            "tags": "{{ steps.fetch.output.body.user.tags }}",
            "score": "{{ steps.fetch.output.body.user.score }}",
            "greeting": "hello {{ steps.fetch.output.body.user.name }}",
            "region": "{{ input.region }}",
        }),
    );
    if let Some(r) = b.request.as_mut() {
        r.headers.insert(
            "x-user".into(),
            "{{ steps.fetch.output.body.user.name }}".into(),
        );
        r.params.insert(
            "who".into(),
            "{{ steps.fetch.output.body.user.name }}".into(),
        );
    }
    let c = with_body(
        step("notify", "POST", target.url("/c?echo=1")),
        json!({
            "status": "{{ steps.enrich.output.status }}",
            "id": "{{ steps.enrich.output.body.id }}",
            "first": "{{tasks[0].output_data.user.id}}",
            "seen": "{{ steps.enrich.output.headers.x-target-seen }}",
        }),
    );
    let submitted = submit_chain(
        &mut client,
        chain(
            vec![step("fetch", "GET", answering(&target, "/a", &user)), b, c],
            json!({"region": "eu-west"}),
        ),
    )
    .await;
    assert!(submitted.id.starts_with("c_"), "id {}", submitted.id);
    assert!(!submitted.existing);
    let done = wait_chain(&mut client, &submitted.id, SOON).await;
    assert_eq!(done.status, ChainStatus::Succeeded as i32, "{done:#?}");
    for s in &done.steps {
        assert_eq!(s.status, StepStatus::Succeeded as i32, "{s:#?}");
        assert!(s.job_id.starts_with("j_"));
        assert_eq!(s.attempts.len(), 1);
    }
    assert_eq!(step_of(&done, "enrich").depends_on, vec!["fetch"]);
    assert!(step_of(&done, "fetch").depends_on.is_empty());

    let seen_b = target.received_on("/b/7");
    assert_eq!(
        seen_b.len(),
        1,
        "the url took the id: {:?}",
        target.received()
    );
    let sent = &seen_b[0];
    assert_eq!(
        body_json(sent),
        json!({"id": 7, "tags": ["x", "y"], "score": 2.5, "greeting": "hello Ada Lovelace", "region": "eu-west"}),
        "whole references keep their types; a reference inside a string is text"
    );
    assert_eq!(sent.header("x-user"), Some("Ada Lovelace"));
    assert!(
        sent.target.contains("who=Ada+Lovelace") || sent.target.contains("who=Ada%20Lovelace"),
        "the query value is encoded: {}",
        sent.target
    );
    let sent_c = &target.received_on("/c")[0];
    assert_eq!(
        body_json(sent_c),
        json!({"status": 200, "id": 7, "first": 7, "seen": "1"})
    );
    // The request as actually sent, on the step.
    let enrich = step_of(&done, "enrich");
    let request = enrich.request.as_ref().expect("the request as sent");
    assert!(request.url.ends_with("/b/7?echo=1"), "{}", request.url);
    assert_eq!(
        request.headers.get("x-user").map(String::as_str),
        Some("Ada Lovelace")
    );

    // Each step's call is an ordinary job, marked with its chain and step.
    let mut jobs = jobqueue::proto::job_service_client::JobServiceClient::connect(format!(
        "http://{}",
        server.addr
    ))
    .await
    .unwrap();
    let job = get_job(&mut jobs, &enrich.job_id).await;
    assert_eq!(job.chain_id, done.id);
    assert_eq!(job.step_id, "enrich");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn branches_run_side_by_side_and_a_join_waits_for_all_of_them() {
    let target = Target::start().await.unwrap();
    let server = Server::start().await;
    let mut client = chains(server.addr).await;
    let root = step("root", "GET", answering(&target, "/root", &json!({"n": 1})));
    let left = after(
        step("left", "GET", target.url("/left?delay_ms=400")),
        &["root"],
    );
    let right = after(
        step("right", "GET", target.url("/right?delay_ms=400")),
        &["root"],
    );
    let join = after(
        with_body(
            step("join", "POST", target.url("/join")),
            json!({"l": "{{ steps.left.output.body.path }}", "r": "{{ steps.right.output.body.path }}"}),
        ),
        &["left", "right"],
    );
    let submitted = submit_chain(
        &mut client,
        chain(vec![root, left, right, join], json!(null)),
    )
    .await;
    let done = wait_chain(&mut client, &submitted.id, SOON).await;
    assert_eq!(done.status, ChainStatus::Succeeded as i32, "{done:#?}");
    assert!(
        target.max_in_flight() >= 2,
        "the branches overlapped at the target"
    );
    let l = &target.received_on("/left")[0];
    let r = &target.received_on("/right")[0];
    let gap = if l.at > r.at {
        l.at - r.at
    } else {
        r.at - l.at
    };
    assert!(
        gap < Duration::from_millis(300),
        "branches started {gap:?} apart"
    );
    let j = &target.received_on("/join")[0];
    assert!(j.at >= l.at + Duration::from_millis(400) && j.at >= r.at + Duration::from_millis(400));
    assert_eq!(body_json(j), json!({"l": "/left", "r": "/right"}));
    assert_eq!(step_of(&done, "join").depends_on, vec!["left", "right"]);
    server.stop().await;
}

/// A producer promising `{id: string}` and a consumer taking `{user_id: integer}`.
async fn user_contracts(contracts: &mut Contracts) {
    create_contract(
        contracts,
        "user",
        None,
        Some(json!({
            "type": "object",
            "properties": {"id": {"type": "string"}, "nickname": {"type": "string"}, "age": {"type": "integer"}},
            "required": ["id", "age"]
        })),
        false,
    )
    .await;
    create_contract(
        contracts,
        "order",
        Some(json!({
            "type": "object",
            "properties": {"user_id": {"type": "integer"}, "note": {"type": "string"}},
            "required": ["user_id"],
            "additionalProperties": false
        })),
        Some(json!({"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]})),
        false,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wiring_that_cannot_fit_is_refused_at_submit_with_both_pointers() {
    let target = Target::start().await.unwrap();
    let server = Server::start().await;
    let mut client = chains(server.addr).await;
    let mut registry = contracts(server.addr).await;
    user_contracts(&mut registry).await;
    let producer = keeping(step("user", "GET", target.url("/u")), "user", 0);
    let consumer = |body: Value| {
        keeping(
            with_body(step("order", "POST", target.url("/o")), body),
            "order",
            1,
        )
    };

    // A string wired where an integer is taken.
    let error = client
        .submit_chain(proto::SubmitChainRequest {
            chain: Some(chain(
                vec![
                    producer.clone(),
                    consumer(json!({"user_id": "{{ steps.user.output.body.id }}"})),
                ],
                json!(null),
            )),
        })
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument, "{error:?}");
    let fields = bad_fields(&error);
    assert!(
        fields
            .iter()
            .any(|f| f.starts_with("chain.steps[1].request.body/user_id")),
        "{fields:?}"
    );
    let message = error.message();
    assert!(
        message.contains("producer schema at /properties/id"),
        "{message}"
    );
    assert!(
        message.contains("consumer schema at /properties/user_id") && message.contains("integer"),
        "{message}"
    );

    // A property the producer does not promise to send, and one it never declares.
    for (body, says) in [
        (
            json!({"user_id": "{{ steps.user.output.body.age }}", "note": "{{ steps.user.output.body.nickname }}"}),
            "required",
        ),
        (
            json!({"user_id": "{{ steps.user.output.body.age }}", "note": "{{ steps.user.output.body.email }}"}),
            "declared",
        ),
        (
            json!({"user_id": "{{ steps.user.output.body.age }}", "extra": 1}),
            "",
        ),
    ] {
        let error = client
            .submit_chain(proto::SubmitChainRequest {
                chain: Some(chain(
                    vec![producer.clone(), consumer(body.clone())],
                    json!(null),
                )),
            })
            .await;
        match says {
            "" => {
                // A literal is not a wire: the runtime check refuses it (see below).
                assert!(error.is_ok(), "{body}: {error:?}");
            }
            _ => {
                let error = error.unwrap_err();
                assert_eq!(error.code(), Code::InvalidArgument);
                assert!(
                    error.message().contains(says),
                    "{body}: {}",
                    error.message()
                );
                assert!(bad_fields(&error).iter().any(|f| f.contains("/note")));
            }
        }
    }

    // The same wiring fits with integers on both sides.
    let fits = client
        .check_chain(proto::CheckChainRequest {
            chain: Some(chain(
                vec![
                    producer.clone(),
                    consumer(json!({"user_id": "{{ steps.user.output.body.age }}"})),
                ],
                json!(null),
            )),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(fits.accepted, "{fits:#?}");
    assert_eq!(fits.wires.len(), 1);
    assert_eq!(fits.wires[0].verdict, proto::WireVerdict::Yes as i32);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dry_run_reports_every_wire_and_creates_nothing() {
    let target = Target::start().await.unwrap();
    let server = Server::start().await;
    let mut client = chains(server.addr).await;
    let mut registry = contracts(server.addr).await;
    user_contracts(&mut registry).await;
    let spec = chain(
        vec![
            keeping(step("user", "GET", target.url("/u")), "user", 1),
            keeping(
                with_body(
                    step(
                        "order",
                        "POST",
                        target.url("/o/{{ steps.user.output.body.id }}"),
                    ),
                    json!({"user_id": "{{ steps.user.output.body.id }}", "note": "{{ steps.user.output.body.id }}"}),
                ),
                "order",
                0,
            ),
            // No contract: whatever it answers cannot be judged.
            with_body(
                step("free", "POST", target.url("/f")),
                json!({"x": "{{ steps.order.output.body.ok }}"}),
            ),
            with_body(
                step("last", "POST", target.url("/l")),
                json!({"y": "{{ steps.free.output.body.anything }}"}),
            ),
        ],
        json!(null),
    );
    let report = client
        .check_chain(proto::CheckChainRequest {
            chain: Some(spec.clone()),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!report.accepted);
    assert_eq!(report.order, vec!["user", "order", "free", "last"]);
    let verdict = |field: &str, pointer: &str| {
        report
            .wires
            .iter()
            .find(|w| w.field == field && w.pointer == pointer && w.step != "user")
            .map(|w| proto::WireVerdict::try_from(w.verdict).unwrap())
            .unwrap_or_else(|| panic!("no wire at {field} {pointer}: {report:#?}"))
    };
    assert_eq!(verdict("request.body", "/user_id"), proto::WireVerdict::No);
    assert_eq!(verdict("request.body", "/note"), proto::WireVerdict::Yes);
    assert_eq!(verdict("request.url", "/"), proto::WireVerdict::Yes);
    assert_eq!(
        verdict("request.body", "/y"),
        proto::WireVerdict::CannotTell
    );
    let no = report
        .wires
        .iter()
        .find(|w| w.pointer == "/user_id")
        .unwrap();
    assert_eq!(no.findings[0].producer_pointer, "/properties/id");
    assert_eq!(no.findings[0].consumer_pointer, "/properties/user_id");
    no_chains(&mut client).await;

    // Strict refuses what cannot be told; off checks only the graph.
    let mut fixed = spec.clone();
    fixed.steps[1] = keeping(
        with_body(
            step("order", "POST", target.url("/o")),
            json!({"user_id": "{{ steps.user.output.body.age }}"}),
        ),
        "order",
        0,
    );
    fixed.check = proto::WiringCheck::Strict as i32;
    let strict = client
        .submit_chain(proto::SubmitChainRequest {
            chain: Some(fixed.clone()),
        })
        .await
        .unwrap_err();
    assert_eq!(strict.code(), Code::InvalidArgument);
    assert!(
        bad_fields(&strict)
            .iter()
            .any(|f| f.starts_with("chain.steps[3].request.body/y")),
        "{strict:?}"
    );
    fixed.check = proto::WiringCheck::On as i32;
    let report = client
        .check_chain(proto::CheckChainRequest {
            chain: Some(fixed.clone()),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        report.accepted,
        "cannot-tell passes by default: {report:#?}"
    );
    let mut off = spec.clone();
    off.check = proto::WiringCheck::Off as i32;
    let report = client
        .check_chain(proto::CheckChainRequest { chain: Some(off) })
        .await
        .unwrap()
        .into_inner();
    assert!(report.accepted && report.wires.is_empty(), "{report:#?}");
    no_chains(&mut client).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_chains_are_refused_naming_the_step_and_field_and_store_nothing() {
    let target = Target::start().await.unwrap();
    let server = Server::start().await;
    let mut client = chains(server.addr).await;
    let mut registry = contracts(server.addr).await;
    user_contracts(&mut registry).await;
    create_contract(
        &mut registry,
        "job-input",
        Some(json!({"type": "object", "properties": {"n": {"type": "integer", "minimum": 1}}, "required": ["n"]})),
        None,
        false,
    )
    .await;
    let a = || step("a", "GET", target.url("/a"));
    let b = || step("b", "GET", target.url("/b"));
    let many: Vec<_> = (0..101)
        .map(|i| step(&format!("s{i}"), "GET", target.url("/s")))
        .collect();
    let mut input_contract = chain(vec![a()], json!({"n": 0}));
    input_contract.input_contract = Some(proto::ContractVersion {
        name: "job-input".into(),
        version: 0,
    });
    let cases: Vec<(proto::ChainSpec, Code, &str)> = vec![
        (
            chain(vec![a(), step("a", "GET", target.url("/x"))], json!(null)),
            Code::InvalidArgument,
            "chain.steps[1].id",
        ),
        (
            chain(vec![a(), after(b(), &["nope"])], json!(null)),
            Code::InvalidArgument,
            "chain.steps[1].depends_on[0]",
        ),
        (
            chain(vec![after(a(), &["b"]), after(b(), &["a"])], json!(null)),
            Code::InvalidArgument,
            "chain.steps",
        ),
        (
            chain(
                vec![
                    a(),
                    after(
                        with_body(b(), json!({"v": "{{ steps.a.output.body.x "})),
                        &[],
                    ),
                ],
                json!(null),
            ),
            Code::InvalidArgument,
            "chain.steps[1].request.json",
        ),
        (
            chain(
                vec![
                    a(),
                    after(
                        with_body(b(), json!({"v": "{{ steps.a.output.body.x }}"})),
                        &[],
                    ),
                ],
                json!(null),
            ),
            Code::InvalidArgument,
            "chain.steps[1].request.body",
        ),
        (
            chain(
                vec![
                    a(),
                    with_body(b(), json!({"v": "{{ steps.zz.output.body.x }}"})),
                ],
                json!(null),
            ),
            Code::InvalidArgument,
            "chain.steps[1].request.body",
        ),
        (
            chain(many, json!(null)),
            Code::InvalidArgument,
            "chain.steps",
        ),
        (
            chain(
                vec![step("a", "GET", "{{ input.url }}".into())],
                json!({"url": "http://x"}),
            ),
            Code::InvalidArgument,
            "chain.steps[0].request.url",
        ),
        (input_contract, Code::InvalidArgument, "chain.input/n"),
        (
            chain(vec![keeping(a(), "nobody", 0)], json!(null)),
            Code::NotFound,
            "",
        ),
        (
            chain(vec![keeping(a(), "user", 9)], json!(null)),
            Code::NotFound,
            "",
        ),
        (
            chain(vec![], json!(null)),
            Code::InvalidArgument,
            "chain.steps",
        ),
    ];
    for (spec, code, field) in cases {
        let error = client
            .submit_chain(proto::SubmitChainRequest {
                chain: Some(spec.clone()),
            })
            .await
            .expect_err("refused");
        assert_eq!(error.code(), code, "{field}: {error:?}");
        if !field.is_empty() {
            assert!(
                bad_fields(&error).iter().any(|f| f == field),
                "{field}: {:?}",
                bad_fields(&error)
            );
        }
    }

    // A deactivated version is refused for new chains.
    registry
        .deactivate_contract(proto::DeactivateContractRequest {
            name: "user".into(),
            version: 1,
        })
        .await
        .unwrap();
    let error = client
        .submit_chain(proto::SubmitChainRequest {
            chain: Some(chain(vec![keeping(a(), "user", 1)], json!(null))),
        })
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument, "{error:?}");
    assert!(
        error.message().contains("deactivated"),
        "{}",
        error.message()
    );
    no_chains(&mut client).await;
    assert_eq!(target.count(), 0, "nothing ran");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_breaks_the_output_contract_fails_its_step_skips_what_needs_it_and_runs_the_alert()
 {
    let target = Target::start().await.unwrap();
    let server = Server::start().await;
    let mut client = chains(server.addr).await;
    let mut registry = contracts(server.addr).await;
    user_contracts(&mut registry).await;
    // The target answers an id that is a number, where the contract promises a string.
    let bad = json!({"id": 12, "age": 40});
    let spec = chain(
        vec![
            keeping(
                step("user", "GET", answering(&target, "/u", &bad)),
                "user",
                1,
            ),
            keeping(
                with_body(
                    step("order", "POST", target.url("/o")),
                    json!({"user_id": "{{ steps.user.output.body.age }}"}),
                ),
                "order",
                1,
            ),
            {
                let mut alert = after(
                    with_body(
                        step("alert", "POST", target.url("/alert")),
                        json!({"status": "{{ steps.user.output.status }}", "got": "{{ steps.user.output.body.id }}"}),
                    ),
                    &["order"],
                );
                alert.run_if = proto::RunIf::OnFailure as i32;
                alert
            },
        ],
        json!(null),
    );
    // The alert reads `user`, which it depends on through `order`.
    let spec = {
        let mut spec = spec;
        spec.check = proto::WiringCheck::On as i32;
        spec
    };
    let submitted = submit_chain(&mut client, spec).await;
    let done = wait_chain(&mut client, &submitted.id, SOON).await;
    assert_eq!(done.status, ChainStatus::Failed as i32, "{done:#?}");
    let user = step_of(&done, "user");
    assert_eq!(user.status, StepStatus::Failed as i32);
    assert_eq!(
        user.error_class,
        proto::ErrorClass::ContractViolation as i32
    );
    assert!(
        user.reason.contains("/id") && user.reason.contains("string"),
        "{}",
        user.reason
    );
    assert!(
        user.reason.contains("contract user version 1"),
        "{}",
        user.reason
    );
    assert_eq!(user.attempts.len(), 1, "a violation is not retried");
    let attempt = &user.attempts[0];
    assert_eq!(
        attempt.error_class,
        proto::ErrorClass::ContractViolation as i32
    );
    assert!(
        attempt.error_message.contains("/properties/id/type"),
        "schema path: {}",
        attempt.error_message
    );
    let order = step_of(&done, "order");
    assert_eq!(order.status, StepStatus::Skipped as i32);
    assert!(order.reason.contains("user failed"), "{}", order.reason);
    assert!(order.job_id.is_empty());
    let alert = step_of(&done, "alert");
    assert_eq!(alert.status, StepStatus::Succeeded as i32, "{alert:#?}");
    assert_eq!(
        body_json(&target.received_on("/alert")[0]),
        json!({"status": 200, "got": 12})
    );
    assert!(target.received_on("/o").is_empty());

    // The input sent is checked too: a literal the contract does not allow.
    let spec = chain(
        vec![keeping(
            with_body(
                step("order", "POST", target.url("/o2")),
                json!({"user_id": "{{ input.n }}", "extra": true}),
            ),
            "order",
            1,
        )],
        json!({"n": 5}),
    );
    let submitted = submit_chain(&mut client, spec).await;
    let done = wait_chain(&mut client, &submitted.id, SOON).await;
    let order = step_of(&done, "order");
    assert_eq!(order.status, StepStatus::Failed as i32);
    assert_eq!(
        order.error_class,
        proto::ErrorClass::ContractViolation as i32
    );
    assert!(
        order.reason.contains("request body") && order.reason.contains("extra"),
        "{}",
        order.reason
    );
    assert!(
        target.received_on("/o2").is_empty(),
        "a step whose input breaks its contract is not called"
    );

    // A reference that finds nothing fails its step with the path.
    let spec = chain(
        vec![
            step("a", "GET", answering(&target, "/r", &json!({"items": []}))),
            with_body(
                step("b", "POST", target.url("/r2")),
                json!({"first": "{{ steps.a.output.body.items[0].id }}"}),
            ),
        ],
        json!(null),
    );
    let submitted = submit_chain(&mut client, spec).await;
    let done = wait_chain(&mut client, &submitted.id, SOON).await;
    let b = step_of(&done, "b");
    assert_eq!(b.status, StepStatus::Failed as i32);
    assert_eq!(b.error_class, proto::ErrorClass::Reference as i32);
    assert!(
        b.reason.contains("items[0]") && b.reason.contains("empty array"),
        "{}",
        b.reason
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_output_over_the_cap_fails_with_a_clear_error() {
    let target = Target::start().await.unwrap();
    let server = Server::start_with(|c| c.step_output_max_bytes = 1000).await;
    let mut client = chains(server.addr).await;
    let submitted = submit_chain(
        &mut client,
        chain(
            vec![
                step("big", "GET", target.url("/big?body_size=5000")),
                step("next", "GET", target.url("/next")),
            ],
            json!(null),
        ),
    )
    .await;
    let done = wait_chain(&mut client, &submitted.id, SOON).await;
    let big = step_of(&done, "big");
    assert_eq!(
        big.error_class,
        proto::ErrorClass::OutputTooLarge as i32,
        "{big:#?}"
    );
    assert!(
        big.reason.contains("5000") && big.reason.contains("1000"),
        "{}",
        big.reason
    );
    assert_eq!(step_of(&done, "next").status, StepStatus::Skipped as i32);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canceling_a_chain_aborts_its_call_and_starts_nothing_more() {
    let target = Target::start().await.unwrap();
    let server = Server::start().await;
    let mut client = chains(server.addr).await;
    let mut alert = after(step("alert", "GET", target.url("/alert")), &["slow"]);
    alert.run_if = proto::RunIf::Always as i32;
    let submitted = submit_chain(
        &mut client,
        chain(
            vec![
                step("fast", "GET", target.url("/fast")),
                step("slow", "GET", target.url("/slow?delay_ms=20000")),
                step("last", "GET", target.url("/last")),
                alert,
            ],
            json!(null),
        ),
    )
    .await;
    assert!(target.wait_for(2, SOON).await, "the slow call started");
    let canceled = client
        .cancel_chain(proto::CancelChainRequest {
            id: submitted.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(canceled.status, ChainStatus::Canceled as i32);
    assert_eq!(
        step_of(&canceled, "fast").status,
        StepStatus::Succeeded as i32
    );
    for id in ["slow", "last", "alert"] {
        assert_eq!(
            step_of(&canceled, id).status,
            StepStatus::Canceled as i32,
            "{id}"
        );
    }
    // The call in flight is dropped, not awaited.
    let until = Instant::now() + Duration::from_secs(5);
    while target.open_connections() > 0 && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(target.open_connections(), 0, "the slow call was aborted");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(target.received_on("/last").is_empty() && target.received_on("/alert").is_empty());
    let again = client
        .cancel_chain(proto::CancelChainRequest {
            id: submitted.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::FailedPrecondition);
    let missing = client
        .cancel_chain(proto::CancelChainRequest {
            id: "c_01ARZ3NDEKTSV4RRFFQ69G5FAV".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retrying_a_failed_chain_resumes_at_the_failure_without_repeating_what_succeeded() {
    let target = Target::start().await.unwrap();
    let server = Server::start().await;
    let mut client = chains(server.addr).await;
    let submitted = submit_chain(
        &mut client,
        chain(
            vec![
                step(
                    "a",
                    "GET",
                    answering(&target, "/a", &json!({"token": "t-1"})),
                ),
                // Fails its first request, succeeds after.
                with_body(
                    step("b", "POST", target.url("/b?fail=1&echo=1")),
                    json!({"t": "{{ steps.a.output.body.token }}"}),
                ),
                with_body(
                    step("c", "POST", target.url("/c?echo=1")),
                    json!({"t": "{{ steps.b.output.body.t }}"}),
                ),
            ],
            json!(null),
        ),
    )
    .await;
    let failed = wait_chain(&mut client, &submitted.id, SOON).await;
    assert_eq!(failed.status, ChainStatus::Failed as i32, "{failed:#?}");
    assert_eq!(step_of(&failed, "b").status, StepStatus::Failed as i32);
    assert_eq!(step_of(&failed, "c").status, StepStatus::Skipped as i32);
    let first_b = step_of(&failed, "b").job_id.clone();

    // A step's job is not retried on its own: its chain is.
    let mut jobs = jobqueue::proto::job_service_client::JobServiceClient::connect(format!(
        "http://{}",
        server.addr
    ))
    .await
    .unwrap();
    let refused = jobs
        .retry_job(proto::RetryJobRequest {
            id: first_b.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(
        refused.message().contains("RetryChain"),
        "{}",
        refused.message()
    );

    let retried = client
        .retry_chain(proto::RetryChainRequest {
            id: submitted.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(retried.status, ChainStatus::Running as i32);
    let done = wait_chain(&mut client, &submitted.id, SOON).await;
    assert_eq!(done.status, ChainStatus::Succeeded as i32, "{done:#?}");
    assert_eq!(
        target.received_on("/a").len(),
        1,
        "a succeeded once and is not repeated"
    );
    assert_eq!(target.received_on("/b").len(), 2);
    assert_ne!(step_of(&done, "b").job_id, first_b, "b ran as a new job");
    assert_eq!(body_json(&target.received_on("/c")[0]), json!({"t": "t-1"}));
    // Where a chain stands rests on its jobs: none of them is deleted on its
    // own, neither a step's job nor the job of a run the retry left behind.
    for id in [step_of(&done, "a").job_id.clone(), first_b.clone()] {
        let refused = jobs
            .delete_job(proto::DeleteJobRequest { id: id.clone() })
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
        assert!(
            refused.message().contains(&submitted.id),
            "{}",
            refused.message()
        );
        let kept = jobs
            .get_job(proto::GetJobRequest { id })
            .await
            .unwrap()
            .into_inner();
        assert_ne!(kept.id, "");
    }
    let again = client
        .retry_chain(proto::RetryChainRequest {
            id: submitted.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::FailedPrecondition);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contracts_new_version_leaves_chains_already_accepted_on_theirs() {
    let target = Target::start().await.unwrap();
    let server = Server::start().await;
    let mut client = chains(server.addr).await;
    let mut registry = contracts(server.addr).await;
    create_contract(
        &mut registry,
        "reply",
        None,
        Some(json!({"type": "object", "required": ["ok"]})),
        false,
    )
    .await;
    let answer = json!({"ok": true});
    let submitted = submit_chain(
        &mut client,
        chain(
            vec![
                step("wait", "GET", target.url("/wait?delay_ms=500")),
                keeping(
                    step("check", "GET", answering(&target, "/check", &answer)),
                    "reply",
                    0,
                ),
            ],
            json!(null),
        ),
    )
    .await;
    // Version 2 requires what the target never sends; the chain keeps version 1.
    let v2 = create_contract(
        &mut registry,
        "reply",
        None,
        Some(json!({"type": "object", "required": ["ok", "receipt"]})),
        true,
    )
    .await;
    assert_eq!(v2, 2);
    let done = wait_chain(&mut client, &submitted.id, SOON).await;
    assert_eq!(done.status, ChainStatus::Succeeded as i32, "{done:#?}");
    assert_eq!(
        step_of(&done, "check").contract.as_ref().unwrap().version,
        1
    );
    // A new chain takes the latest version, and its check holds the target to it.
    let newer = submit_chain(
        &mut client,
        chain(
            vec![keeping(
                step("check", "GET", answering(&target, "/check", &answer)),
                "reply",
                0,
            )],
            json!(null),
        ),
    )
    .await;
    let done = wait_chain(&mut client, &newer.id, SOON).await;
    let check = step_of(&done, "check");
    assert_eq!(check.contract.as_ref().unwrap().version, 2);
    assert_eq!(
        check.error_class,
        proto::ErrorClass::ContractViolation as i32
    );
    assert!(check.reason.contains("receipt"), "{}", check.reason);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_resubmitted_with_its_key_is_the_same_chain() {
    let target = Target::start().await.unwrap();
    let server = Server::start().await;
    let mut client = chains(server.addr).await;
    let mut spec = chain(vec![step("a", "GET", target.url("/once"))], json!(null));
    spec.idempotency_key = "nightly-2026-12-05".into();
    spec.tags = vec!["nightly".into()];
    let first = submit_chain(&mut client, spec.clone()).await;
    let second = submit_chain(&mut client, spec).await;
    assert_eq!(first.id, second.id);
    assert!(second.existing && !first.existing);
    wait_chain(&mut client, &first.id, SOON).await;
    assert_eq!(target.received_on("/once").len(), 1);
    let page = client
        .list_chains(proto::ListChainsRequest {
            statuses: vec![ChainStatus::Succeeded as i32],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.chains.len(), 1);
    assert_eq!(page.chains[0].tags, vec!["nightly"]);

    // Pages, newest first.
    let mut ids = vec![first.id.clone()];
    for n in 0..2 {
        let more = chain(
            vec![step("a", "GET", target.url(&format!("/more/{n}")))],
            json!(null),
        );
        ids.push(submit_chain(&mut client, more).await.id);
    }
    ids.reverse();
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = client
            .list_chains(proto::ListChainsRequest {
                page_size: 2,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(page.chains.len() <= 2);
        seen.extend(page.chains.into_iter().map(|c| c.id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen, ids);
    let bad = client
        .list_chains(proto::ListChainsRequest {
            page_token: "not-a-token".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert_eq!(bad_fields(&bad), vec!["page_token"]);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_survives_kill_9_and_runs_each_finished_step_once() {
    let target = Target::start().await.unwrap();
    let db = TestDb::new().await;
    let mut server = Process::start(&db, &["--lease-grace", "300ms"]);
    let mut client = chains(server.addr).await;
    let mut ids = Vec::new();
    for n in 0..5 {
        let submitted = submit_chain(
            &mut client,
            chain(
                vec![
                    {
                        let mut one = step(
                            "one",
                            "GET",
                            answering(&target, &format!("/one/{n}"), &json!({"n": n})),
                        );
                        one.timeout = Some(ms(2000));
                        one.max_attempts = Some(3);
                        one
                    },
                    {
                        let mut two = with_body(
                            step(
                                "two",
                                "POST",
                                target.url(&format!("/two/{n}?delay_ms=600&echo=1")),
                            ),
                            json!({"n": "{{ steps.one.output.body.n }}"}),
                        );
                        // Its lease (timeout and grace) runs out soon after the kill.
                        two.timeout = Some(ms(2000));
                        two.max_attempts = Some(3);
                        two
                    },
                    {
                        let mut three = with_body(
                            step("three", "POST", target.url(&format!("/three/{n}?echo=1"))),
                            json!({"n": "{{ steps.two.output.body.n }}"}),
                        );
                        three.timeout = Some(ms(2000));
                        three.max_attempts = Some(3);
                        three
                    },
                ],
                json!(null),
            ),
        )
        .await;
        ids.push(submitted.id);
    }
    // Kill while the second steps are in flight. What had ended by then (as a
    // read just before the kill shows) must not run again.
    assert!(target.wait_for(8, SOON).await, "the chains got going");
    let mut ended_before = std::collections::HashSet::new();
    for id in &ids {
        for s in get_chain(&mut client, id).await.steps {
            if s.status == StepStatus::Succeeded as i32 {
                ended_before.insert((id.clone(), s.id));
            }
        }
    }
    assert!(
        !ended_before.is_empty(),
        "some steps had ended before the kill"
    );
    server.kill9();
    let restarted = Process::start(&db, &["--lease-grace", "300ms"]);
    let mut client = chains(restarted.addr).await;
    for (n, id) in ids.iter().enumerate() {
        let done = wait_chain(&mut client, id, Duration::from_secs(30)).await;
        assert_eq!(done.status, ChainStatus::Succeeded as i32, "{done:#?}");
        for step in ["one", "two", "three"] {
            let calls = target.received_on(&format!("/{step}/{n}")).len();
            if ended_before.contains(&(id.clone(), step.to_string())) {
                assert_eq!(calls, 1, "chain {n} step {step} had ended: it ran once");
            } else {
                assert!(
                    (1..=2).contains(&calls),
                    "chain {n} step {step}: {calls} calls (at most once more, for a call cut off)"
                );
            }
        }
        let threes = target.received_on(&format!("/three/{n}"));
        assert_eq!(
            body_json(&threes[0]),
            json!({"n": n}),
            "the data made it through"
        );
    }
    drop(restarted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_on_one_database_move_each_chain_once() {
    let target = Target::start().await.unwrap();
    let first = Server::start().await;
    let second = Server::start_beside(&first, |_| {}).await;
    let mut clients = [chains(first.addr).await, chains(second.addr).await];
    let mut ids = Vec::new();
    for n in 0..20 {
        let branches = ["x", "y", "z"];
        let mut steps = vec![step(
            "root",
            "GET",
            answering(&target, &format!("/root/{n}"), &json!({"n": n})),
        )];
        for b in branches {
            steps.push(after(
                with_body(
                    step(
                        b,
                        "POST",
                        target.url(&format!("/{b}/{n}?echo=1&delay_ms=20")),
                    ),
                    json!({"n": "{{ steps.root.output.body.n }}"}),
                ),
                &["root"],
            ));
        }
        steps.push(after(
            with_body(
                step("join", "POST", target.url(&format!("/join/{n}"))),
                json!({"x": "{{ steps.x.output.body.n }}", "y": "{{ steps.y.output.body.n }}", "z": "{{ steps.z.output.body.n }}"}),
            ),
            &branches,
        ));
        let client = &mut clients[n % 2];
        ids.push(submit_chain(client, chain(steps, json!(null))).await.id);
    }
    for (n, id) in ids.iter().enumerate() {
        let done = wait_chain(&mut clients[(n + 1) % 2], id, SOON).await;
        assert_eq!(done.status, ChainStatus::Succeeded as i32, "{done:#?}");
        for path in ["root", "x", "y", "z", "join"] {
            assert_eq!(
                target.received_on(&format!("/{path}/{n}")).len(),
                1,
                "chain {n}: {path} ran once"
            );
        }
        assert_eq!(
            body_json(&target.received_on(&format!("/join/{n}"))[0]),
            json!({"x": n, "y": n, "z": n})
        );
    }
    second.stop().await;
    first.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watching_a_chain_streams_each_step_moving_then_the_end() {
    let target = Target::start().await.unwrap();
    let server = Server::start().await;
    let mut client = chains(server.addr).await;
    let submitted = submit_chain(
        &mut client,
        chain(
            vec![
                step("first", "GET", target.url("/w1?delay_ms=300")),
                step("second", "GET", target.url("/w2?delay_ms=300")),
                step("never", "GET", target.url("/w3?status=500")),
                {
                    let mut cleanup = after(step("cleanup", "GET", target.url("/w4")), &["never"]);
                    cleanup.run_if = proto::RunIf::OnFailure as i32;
                    cleanup
                },
            ],
            json!(null),
        ),
    )
    .await;
    let mut stream = client
        .watch_chain(proto::WatchChainRequest {
            id: submitted.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut events = Vec::new();
    let until = Instant::now() + SOON;
    while let Some(event) = tokio::time::timeout_at(until.into(), stream.message())
        .await
        .expect("the stream ends once the chain has")
        .unwrap()
    {
        events.push(event);
    }
    let kinds: Vec<i32> = events.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds.first(),
        Some(&(proto::ChainEventKind::Snapshot as i32))
    );
    assert_eq!(kinds.last(), Some(&(proto::ChainEventKind::Ended as i32)));
    let ended = events.last().unwrap().chain.as_ref().unwrap();
    assert_eq!(ended.status, ChainStatus::Failed as i32);
    // Seen in a step's event, or in the chain the stream began with.
    let seen = |id: &str, status: StepStatus| {
        events.iter().any(|e| {
            let in_step = e.step.iter();
            let in_snapshot = e
                .chain
                .iter()
                .filter(|_| e.kind == proto::ChainEventKind::Snapshot as i32)
                .flat_map(|c| c.steps.iter());
            in_step
                .chain(in_snapshot)
                .any(|s| s.id == id && s.status == status as i32)
        })
    };
    for id in ["first", "second"] {
        assert!(
            seen(id, StepStatus::Running),
            "{id} seen running: {events:#?}"
        );
        assert!(seen(id, StepStatus::Succeeded), "{id} seen succeeding");
    }
    assert!(seen("never", StepStatus::Failed));
    assert!(
        seen("cleanup", StepStatus::Succeeded),
        "the failure step ran"
    );
    // Each step's moves come in order.
    let order: Vec<(String, i32)> = events
        .iter()
        .filter_map(|e| e.step.as_ref().map(|s| (s.id.clone(), s.status)))
        .filter(|(id, _)| id == "first")
        .collect();
    let running = order
        .iter()
        .position(|(_, s)| *s == StepStatus::Running as i32);
    let done = order
        .iter()
        .position(|(_, s)| *s == StepStatus::Succeeded as i32);
    assert!(running < done, "{order:?}");

    let missing = client
        .watch_chain(proto::WatchChainRequest {
            id: "c_01ARZ3NDEKTSV4RRFFQ69G5FAV".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_canceled_with_its_queue_ends_its_chain_and_skips_what_needed_it() {
    let target = Target::start().await.unwrap();
    let server = Server::start().await;
    let mut client = chains(server.addr).await;
    let mut queues = queues(server.addr).await;
    queues
        .create_queue(proto::CreateQueueRequest {
            queue: Some(proto::Queue {
                name: "held".into(),
                paused: true,
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    let mut held = step("held", "GET", target.url("/held"));
    held.queue = "held".into();
    let submitted = submit_chain(
        &mut client,
        chain(
            vec![
                step("a", "GET", target.url("/a")),
                held,
                step("c", "GET", target.url("/c")),
            ],
            json!(null),
        ),
    )
    .await;
    // Once `held` waits in its paused queue, the queue is purged under it.
    let until = Instant::now() + SOON;
    while step_of(&get_chain(&mut client, &submitted.id).await, "held").status
        != StepStatus::Queued as i32
    {
        assert!(Instant::now() < until, "held never queued");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    queues
        .purge_queue(proto::PurgeQueueRequest {
            name: "held".into(),
        })
        .await
        .unwrap();
    let done = wait_chain(&mut client, &submitted.id, SOON).await;
    assert_eq!(done.status, ChainStatus::Canceled as i32, "{done:#?}");
    assert_eq!(step_of(&done, "held").status, StepStatus::Canceled as i32);
    assert_eq!(step_of(&done, "c").status, StepStatus::Skipped as i32);
    assert!(target.received_on("/held").is_empty() && target.received_on("/c").is_empty());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_steps_job_is_kept_as_long_as_its_chain_and_goes_with_it() {
    let target = Target::start().await.unwrap();
    let server = Server::start_with(|c| c.maintenance_interval = Duration::from_millis(50)).await;
    let mut client = chains(server.addr).await;
    let mut spec = chain(
        vec![
            step(
                "a",
                "GET",
                answering(&target, "/a", &json!({"token": "t-1"})),
            ),
            // Outlasts a's ttl many times over.
            step("b", "GET", target.url("/b?delay_ms=1200")),
            with_body(
                step("c", "POST", target.url("/c?echo=1")),
                json!({"t": "{{ steps.a.output.body.token }}"}),
            ),
        ],
        json!(null),
    );
    spec.ttl = Some(prost_types::Duration {
        seconds: 0,
        nanos: 300_000_000,
    });
    let submitted = submit_chain(&mut client, spec).await;
    let done = wait_chain(&mut client, &submitted.id, SOON).await;
    assert_eq!(done.status, ChainStatus::Succeeded as i32, "{done:#?}");
    assert_eq!(
        target.received_on("/a").len(),
        1,
        "a ran once though its job's own ttl ran out while b ran"
    );
    assert_eq!(body_json(&target.received_on("/c")[0]), json!({"t": "t-1"}));
    let a_job = step_of(&done, "a").job_id.clone();

    // Once the chain's own ttl runs out, it goes, and its jobs with it.
    let mut jobs = jobqueue::proto::job_service_client::JobServiceClient::connect(format!(
        "http://{}",
        server.addr
    ))
    .await
    .unwrap();
    let until = Instant::now() + SOON;
    loop {
        let chain = client
            .get_chain(proto::GetChainRequest {
                id: submitted.id.clone(),
            })
            .await;
        let job = jobs
            .get_job(proto::GetJobRequest { id: a_job.clone() })
            .await;
        match (chain, job) {
            (Err(c), Err(j)) if c.code() == Code::NotFound && j.code() == Code::NotFound => break,
            (chain, job) => assert!(
                Instant::now() < until,
                "the chain and its jobs are still there: {chain:?} {job:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.stop().await;
}
