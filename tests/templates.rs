//! Templates through the real server: versions and reads, the checks on create,
//! plain jobs made from a template with overrides, its contract held on the input
//! and the response, and chain steps that pin a template's version.

mod common;

use std::time::{Duration, Instant};

use common::*;
use jobqueue::api::convert::value_from_json;
use jobqueue::proto::{
    self, ChainStatus, JobStatus, StepStatus, chain_service_client::ChainServiceClient,
    contract_service_client::ContractServiceClient, template_service_client::TemplateServiceClient,
};
use serde_json::{Value, json};
use tonic::Code;
use tonic::transport::Channel;

type Templates = TemplateServiceClient<Channel>;

async fn templates(addr: std::net::SocketAddr) -> Templates {
    Templates::connect(format!("http://{addr}")).await.unwrap()
}

async fn order_contract(addr: std::net::SocketAddr) {
    let mut contracts = ContractServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    contracts
        .create_contract(proto::CreateContractRequest {
            contract: Some(proto::Contract {
                name: "order".into(),
                description: "an order for a customer".into(),
                input_schema: Some(value_from_json(json!({
                    "type": "object",
                    "properties": {
                        "customer": {
                            "type": "object",
                            "properties": {"id": {"type": "integer"}, "name": {"type": "string"}},
                            "required": ["id", "name"]
                        },
                        "note": {"type": "string"}
                    },
                    "required": ["customer"]
                }))),
                output_schema: Some(value_from_json(json!({
                    "type": "object", "required": ["ok"], "properties": {"ok": {"type": "boolean"}}
                }))),
                ..Default::default()
            }),
            allow_breaking: false,
        })
        .await
        .unwrap();
}

fn template(name: &str, url: String, body: Value) -> proto::Template {
    proto::Template {
        name: name.into(),
        description: "places an order".into(),
        request: Some(proto::HttpRequest {
            method: "POST".into(),
            url,
            headers: [(
                "x-customer".to_string(),
                "{{ input.customer.name }}".to_string(),
            )]
            .into(),
            body: Some(proto::http_request::Body::Json(value_from_json(body))),
            ..Default::default()
        }),
        max_attempts: Some(1),
        tags: vec!["orders".into()],
        contract: Some(proto::ContractVersion {
            name: "order".into(),
            version: 0,
        }),
        ..Default::default()
    }
}

async fn create(
    client: &mut Templates,
    t: proto::Template,
) -> Result<proto::Template, tonic::Status> {
    client
        .create_template(proto::CreateTemplateRequest { template: Some(t) })
        .await
        .map(|r| r.into_inner())
}

fn from_template(name: &str, version: u32, input: Value) -> proto::JobSpec {
    proto::JobSpec {
        template: Some(proto::TemplateCall {
            name: name.into(),
            version,
            input: Some(value_from_json(input)),
        }),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn templates_are_versioned_checked_on_create_and_deactivated() {
    let target = Target::start().await.unwrap();
    let server = Server::start().await;
    order_contract(server.addr).await;
    let mut client = templates(server.addr).await;
    // `note` is not required by the contract's input: a reference to it may find nothing.
    let error = create(
        &mut client,
        template(
            "place-order",
            target.url("/orders"),
            json!({"note": "{{ input.note }}"}),
        ),
    )
    .await
    .unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument, "{error:?}");
    assert!(
        bad_fields(&error)
            .iter()
            .any(|f| f == "template.request.body/note"),
        "{error:?}"
    );
    assert!(error.message().contains("required"), "{}", error.message());
    // A reference to anything but the input.
    let error = create(
        &mut client,
        template(
            "place-order",
            target.url("/orders"),
            json!({"x": "{{ steps.a.output.body.x }}"}),
        ),
    )
    .await
    .unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument);
    assert!(
        bad_fields(&error)
            .iter()
            .any(|f| f == "template.request.body"),
        "{error:?}"
    );
    // A contract that does not exist.
    let mut missing = template("place-order", target.url("/orders"), json!({}));
    missing.contract = Some(proto::ContractVersion {
        name: "nope".into(),
        version: 0,
    });
    assert_eq!(
        create(&mut client, missing).await.unwrap_err().code(),
        Code::NotFound
    );

    let body = json!({"customer": "{{ input.customer.id }}", "who": "{{ input.customer }}"});
    let v1 = create(
        &mut client,
        template(
            "place-order",
            target.url("/orders/{{ input.customer.id }}"),
            body.clone(),
        ),
    )
    .await
    .unwrap();
    assert_eq!((v1.version, v1.active), (1, true));
    assert_eq!(
        v1.contract.as_ref().unwrap().version,
        1,
        "the contract's version is pinned"
    );
    let v2 = create(
        &mut client,
        template(
            "place-order",
            target.url("/v2/{{ input.customer.id }}"),
            body,
        ),
    )
    .await
    .unwrap();
    assert_eq!(v2.version, 2);
    let latest = client
        .get_template(proto::GetTemplateRequest {
            name: "place-order".into(),
            version: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(latest.version, 2);
    assert_eq!(latest.tags, vec!["orders"]);
    let page = client
        .list_templates(proto::ListTemplatesRequest {
            page_size: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.templates.len(), 1);
    let next = client
        .list_templates(proto::ListTemplatesRequest {
            page_size: 1,
            page_token: page.next_page_token,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(next.templates[0].version, 2);
    let off = client
        .deactivate_template(proto::DeactivateTemplateRequest {
            name: "place-order".into(),
            version: 2,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!off.active && off.deactivate_time.is_some());
    let again = client
        .deactivate_template(proto::DeactivateTemplateRequest {
            name: "place-order".into(),
            version: 2,
        })
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::FailedPrecondition);
    // Version 0 now means version 1, the latest active one.
    let mut jobs = server.client.clone();
    let id = submit(
        &mut jobs,
        from_template(
            "place-order",
            0,
            json!({"customer": {"id": 5, "name": "Ada"}}),
        ),
    )
    .await;
    wait_status(
        &mut jobs,
        &id,
        JobStatus::Succeeded,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(target.received_on("/orders/5").len(), 1);
    // A deactivated version named outright is refused.
    let refused = jobs
        .submit_job(proto::SubmitJobRequest {
            job: Some(from_template(
                "place-order",
                2,
                json!({"customer": {"id": 5, "name": "Ada"}}),
            )),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(
        refused.message().contains("deactivated"),
        "{}",
        refused.message()
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_from_a_template_takes_its_input_and_overrides_and_keeps_its_contract() {
    let target = Target::start().await.unwrap();
    let server = Server::start().await;
    order_contract(server.addr).await;
    let mut client = templates(server.addr).await;
    let answer = testkit::percent_encoded(&json!({"ok": true}).to_string());
    create(
        &mut client,
        template(
            "place-order",
            target.url(&format!(
                "/orders/{{{{ input.customer.id }}}}?json={answer}"
            )),
            json!({"id": "{{ input.customer.id }}", "customer": "{{ input.customer }}"}),
        ),
    )
    .await
    .unwrap();
    let mut jobs = server.client.clone();
    let mut spec = from_template(
        "place-order",
        1,
        json!({"customer": {"id": 42, "name": "Grace Hopper"}}),
    );
    spec.request = Some(proto::HttpRequest {
        headers: [("x-trace".to_string(), "t-1".to_string())].into(),
        params: [("source".to_string(), "api".to_string())].into(),
        ..Default::default()
    });
    spec.tags = vec!["mine".into()];
    let id = submit(&mut jobs, spec).await;
    let job = wait_status(
        &mut jobs,
        &id,
        JobStatus::Succeeded,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(
        job.tags,
        vec!["mine", "orders"],
        "tags are the template's and the job's"
    );
    let seen = &target.received_on("/orders/42")[0];
    assert_eq!(
        serde_json::from_slice::<Value>(&seen.body).unwrap(),
        json!({"id": 42, "customer": {"id": 42, "name": "Grace Hopper"}})
    );
    assert_eq!(seen.header("x-customer"), Some("Grace Hopper"));
    assert_eq!(seen.header("x-trace"), Some("t-1"));
    assert!(seen.target.contains("source=api"), "{}", seen.target);

    // Input that breaks the contract is refused at submit, naming where.
    let refused = jobs
        .submit_job(proto::SubmitJobRequest {
            job: Some(from_template(
                "place-order",
                1,
                json!({"customer": {"id": "x", "name": "Ada"}}),
            )),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert_eq!(bad_fields(&refused), vec!["job.template.input/customer/id"]);
    let unknown = jobs
        .submit_job(proto::SubmitJobRequest {
            job: Some(from_template("nope", 0, json!({}))),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    let mixed = jobs
        .submit_job(proto::SubmitJobRequest {
            job: Some(proto::JobSpec {
                request: Some(proto::HttpRequest {
                    url: target.url("/x"),
                    ..Default::default()
                }),
                ..from_template(
                    "place-order",
                    1,
                    json!({"customer": {"id": 1, "name": "A"}}),
                )
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(mixed.code(), Code::InvalidArgument);
    assert_eq!(bad_fields(&mixed), vec!["job.request"]);

    // The response is held to the contract's output schema.
    create(
        &mut client,
        template(
            "bad-answer",
            target.url(&format!(
                "/bad/{{{{ input.customer.id }}}}?json={}",
                testkit::percent_encoded(&json!({"ok": "yes"}).to_string())
            )),
            json!({}),
        ),
    )
    .await
    .unwrap();
    let id = submit(
        &mut jobs,
        from_template("bad-answer", 1, json!({"customer": {"id": 1, "name": "A"}})),
    )
    .await;
    let job = wait_status(&mut jobs, &id, JobStatus::Failed, Duration::from_secs(10)).await;
    assert_eq!(
        job.last_error_class,
        proto::ErrorClass::ContractViolation as i32
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_step_pins_its_templates_version_and_wires_into_its_input() {
    let target = Target::start().await.unwrap();
    let server = Server::start().await;
    order_contract(server.addr).await;
    let mut client = templates(server.addr).await;
    let answer = testkit::percent_encoded(&json!({"ok": true}).to_string());
    create(
        &mut client,
        template(
            "place-order",
            target.url(&format!("/v1/{{{{ input.customer.id }}}}?json={answer}")),
            json!({"n": "{{ input.customer.id }}"}),
        ),
    )
    .await
    .unwrap();
    let mut chains = ChainServiceClient::connect(format!("http://{}", server.addr))
        .await
        .unwrap();
    let lookup = proto::ChainStep {
        id: "lookup".into(),
        request: Some(proto::HttpRequest {
            url: target.url(&format!(
                "/lookup?delay_ms=400&json={}",
                testkit::percent_encoded(&json!({"id": 9, "name": "Ada"}).to_string())
            )),
            ..Default::default()
        }),
        ..Default::default()
    };
    let order = |input: Value| proto::ChainStep {
        id: "order".into(),
        template: Some(proto::TemplateCall {
            name: "place-order".into(),
            version: 0,
            input: Some(value_from_json(input)),
        }),
        ..Default::default()
    };
    // Wired into the template's input, and checked against its contract there: a
    // producer with no output contract cannot be told, which strict refuses.
    let strict = chains
        .submit_chain(proto::SubmitChainRequest {
            chain: Some(proto::ChainSpec {
                steps: vec![
                    lookup.clone(),
                    order(json!({"customer": "{{ steps.lookup.output.body }}"})),
                ],
                check: proto::WiringCheck::Strict as i32,
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(strict.code(), Code::InvalidArgument);
    assert!(
        bad_fields(&strict)
            .iter()
            .any(|f| f == "chain.steps[1].template.input/customer"),
        "{strict:?}"
    );
    let submitted = chains
        .submit_chain(proto::SubmitChainRequest {
            chain: Some(proto::ChainSpec {
                steps: vec![
                    lookup,
                    order(json!({"customer": "{{ steps.lookup.output.body }}"})),
                ],
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner();
    // A new version while the chain waits on its first step.
    create(
        &mut client,
        template(
            "place-order",
            target.url("/v2/{{ input.customer.id }}"),
            json!({}),
        ),
    )
    .await
    .unwrap();
    let until = Instant::now() + Duration::from_secs(15);
    let done = loop {
        let chain = chains
            .get_chain(proto::GetChainRequest {
                id: submitted.id.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        if chain.status != ChainStatus::Running as i32 {
            break chain;
        }
        assert!(Instant::now() < until, "{chain:#?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(done.status, ChainStatus::Succeeded as i32, "{done:#?}");
    assert_eq!(done.steps[1].status, StepStatus::Succeeded as i32);
    assert_eq!(
        target.received_on("/v1/9").len(),
        1,
        "the version accepted with the chain ran"
    );
    assert!(target.received_on("/v2/9").is_empty());
    assert_eq!(
        serde_json::from_slice::<Value>(&target.received_on("/v1/9")[0].body).unwrap(),
        json!({"n": 9})
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_runs_the_call_its_template_made() {
    let target = Target::start().await.unwrap();
    let server = Server::start().await;
    order_contract(server.addr).await;
    let mut client = templates(server.addr).await;
    create(
        &mut client,
        template(
            "place-order",
            target.url(&format!(
                "/nightly/{{{{ input.customer.id }}}}?json={}",
                testkit::percent_encoded(&json!({"ok": true}).to_string())
            )),
            json!({"id": "{{ input.customer.id }}"}),
        ),
    )
    .await
    .unwrap();
    let mut schedules = schedules(server.addr).await;
    let created = schedules
        .create_schedule(proto::CreateScheduleRequest {
            schedule_id: "nightly-order".into(),
            schedule: Some(proto::Schedule {
                timetable: Some(proto::schedule::Timetable::Cron("0 3 * * *".into())),
                job: Some(from_template(
                    "place-order",
                    1,
                    json!({"customer": {"id": 3, "name": "Ada"}}),
                )),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner();
    let job = created.job.unwrap();
    assert!(job.template.is_none(), "stored as the call it made");
    assert!(job.request.unwrap().url.contains("/nightly/3?json="));
    // Input that breaks the template's contract is refused.
    let refused = schedules
        .create_schedule(proto::CreateScheduleRequest {
            schedule_id: "broken".into(),
            schedule: Some(proto::Schedule {
                timetable: Some(proto::schedule::Timetable::Cron("0 3 * * *".into())),
                job: Some(from_template("place-order", 1, json!({"customer": {}}))),
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(
        bad_fields(&refused)
            .iter()
            .all(|f| f.starts_with("schedule.job.template.input")),
        "{refused:?}"
    );
    let run = schedules
        .trigger_schedule(proto::TriggerScheduleRequest {
            id: "nightly-order".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(target.wait_for(1, Duration::from_secs(10)).await);
    let seen = &target.received_on("/nightly/3")[0];
    assert_eq!(
        serde_json::from_slice::<Value>(&seen.body).unwrap(),
        json!({"id": 3})
    );
    let mut jobs = server.client.clone();
    wait_status(
        &mut jobs,
        &run.job_id,
        JobStatus::Succeeded,
        Duration::from_secs(10),
    )
    .await;

    // Each run's response is held to the template's output contract, as a
    // submitted job's is.
    create(
        &mut client,
        template(
            "bad-answer",
            target.url(&format!(
                "/nightly-bad?json={}",
                testkit::percent_encoded(&json!({"ok": "yes"}).to_string())
            )),
            json!({}),
        ),
    )
    .await
    .unwrap();
    schedules
        .create_schedule(proto::CreateScheduleRequest {
            schedule_id: "nightly-bad".into(),
            schedule: Some(proto::Schedule {
                timetable: Some(proto::schedule::Timetable::Cron("0 3 * * *".into())),
                job: Some(from_template(
                    "bad-answer",
                    1,
                    json!({"customer": {"id": 4, "name": "Bo"}}),
                )),
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    let run = schedules
        .trigger_schedule(proto::TriggerScheduleRequest {
            id: "nightly-bad".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let job = wait_status(
        &mut jobs,
        &run.job_id,
        JobStatus::Failed,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(
        job.last_error_class,
        proto::ErrorClass::ContractViolation as i32
    );
    server.stop().await;
}
