//! `--mode chains`: three-step chains (each step reads the one before it),
//! `SubmitChain` calls with `--in-flight` of them open at once, run against the
//! loopback target. Its jobs are the chains' steps, so the table's per-job figures
//! (CPU, writer time) are per step, to set beside a plain job's in `batch`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::Context;
use jobqueue::proto::{
    self, chain_service_client::ChainServiceClient, contract_service_client::ContractServiceClient,
};

use super::common::{Bench, SubmitLog, channel, join_logs, set_up_run, wait_until_succeeded};
use crate::proc_stats::{measure_cpu, measure_peak_rss};
use crate::report::{ModeResult, ms};

/// Steps per chain.
const STEPS: usize = 3;

fn value(json: serde_json::Value) -> prost_types::Value {
    jobqueue::api::convert::value_from_json(json)
}

/// The contract every step keeps with `--chain-contracts`: what it sends and what
/// the target echoes back.
const CONTRACT: &str = "bench-step";

fn chain(url_prefix: &str, n: usize, tag: &str, contract: Option<u32>) -> proto::ChainSpec {
    let step = |id: &str, body: serde_json::Value| proto::ChainStep {
        id: id.into(),
        request: Some(proto::HttpRequest {
            method: "POST".into(),
            url: format!("{url_prefix}{n}/{id}?echo=1"),
            body: Some(proto::http_request::Body::Json(value(body))),
            ..Default::default()
        }),
        contract: contract.map(|version| proto::ContractVersion {
            name: CONTRACT.into(),
            version,
        }),
        ..Default::default()
    };
    proto::ChainSpec {
        steps: vec![
            step(
                "first",
                serde_json::json!({"n": "{{ input.n }}", "at": "first"}),
            ),
            step(
                "second",
                serde_json::json!({"n": "{{ steps.first.output.body.n }}"}),
            ),
            step(
                "third",
                serde_json::json!({"n": "{{ steps.second.output.body.n }}"}),
            ),
        ],
        input: Some(value(serde_json::json!({"n": n}))),
        tags: vec![tag.to_string()],
        ..Default::default()
    }
}

/// Creates the steps' contract: the body sent and echoed back holds an integer
/// `n` and, on the first step, a string `at`.
async fn create_contract(bench: &Bench) -> anyhow::Result<u32> {
    let schema = serde_json::json!({
        "type": "object",
        "properties": {"n": {"type": "integer", "minimum": 0}, "at": {"type": "string", "maxLength": 16}},
        "required": ["n"]
    });
    let mut contracts = ContractServiceClient::new(channel(bench).await?);
    let created = contracts
        .create_contract(proto::CreateContractRequest {
            contract: Some(proto::Contract {
                name: CONTRACT.into(),
                description: "what a benchmark step sends and gets back".into(),
                input_schema: Some(value(schema.clone())),
                output_schema: Some(value(schema)),
                ..Default::default()
            }),
            allow_breaking: true,
        })
        .await
        .context("CreateContract")?;
    Ok(created.into_inner().version)
}

pub(crate) async fn run_chains(
    bench: &Bench,
    chains: usize,
    in_flight: usize,
    with_contracts: bool,
) -> anyhow::Result<ModeResult> {
    let mode = "chains";
    eprintln!(
        "{mode}: submitting {chains} chains of {STEPS} steps, {in_flight} calls in flight{}",
        if with_contracts {
            ", each step keeping a contract"
        } else {
            ""
        }
    );
    let contract = match with_contracts {
        true => Some(create_contract(bench).await?),
        false => None,
    };
    let setup = set_up_run(bench, mode, chains * STEPS).await?;
    let client = ChainServiceClient::new(channel(bench).await?);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..in_flight.min(chains))
        .map(|_| {
            let mut client = client.clone();
            let next = next.clone();
            let url_prefix = setup.url_prefix.clone();
            let tag = setup.tag.clone();
            tokio::spawn(async move {
                let mut log = SubmitLog::default();
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= chains {
                        break;
                    }
                    let request = proto::SubmitChainRequest {
                        chain: Some(chain(&url_prefix, n, &tag, contract)),
                    };
                    let sent = Instant::now();
                    match client.submit_chain(request).await {
                        Ok(_) => {
                            let acked = Instant::now();
                            log.submit_ms.push(ms(acked - sent));
                            log.acks.extend((0..STEPS).map(|s| super::common::Ack {
                                index: n * STEPS + s,
                                sent,
                                acked,
                            }));
                        }
                        Err(error) => log.failed(&error),
                    }
                }
                log
            })
        })
        .collect();
    let log = join_logs(workers).await.context("submitting chains")?;
    let submit_phase = started.elapsed();
    let steps = log.acks.len();
    anyhow::ensure!(steps > 0, "{mode}: the server accepted no chains");
    let finished = wait_until_succeeded(bench, &setup, mode, steps, started).await?;
    let cpu = measure_cpu(
        bench.server_proc,
        bench.clock_ticks_per_sec,
        setup.cpu_at_start,
    );
    let peak_rss = measure_peak_rss(bench.server_proc, setup.rss_was_reset);
    let end_to_end = finished - started;
    let accepted = steps / STEPS;
    Ok(ModeResult {
        mode,
        shape: format!(
            "{STEPS}-step chains, {in_flight} SubmitChain calls in flight; per-job figures are per step"
        ),
        submitted: steps,
        submit_errors: log.errors,
        first_error: log.first_error,
        submit_unit: "per chain".into(),
        submit_ms: log.submit_ms,
        dispatch_ms: Vec::new(),
        send_to_target_ms: Vec::new(),
        repeats: setup.target.count().saturating_sub(steps),
        submit_phase,
        end_to_end: Some(end_to_end),
        peak_rss,
        cpu,
        extra_json: vec![
            ("chains", accepted.to_string()),
            ("contracts", with_contracts.to_string()),
            (
                "chains_per_sec",
                format!("{:.1}", accepted as f64 / end_to_end.as_secs_f64()),
            ),
        ],
    })
}
