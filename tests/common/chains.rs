//! Chains as the tests drive them: steps, specs, contracts, and waiting on a
//! chain's end.

use std::time::{Duration, Instant};

use jobqueue::api::convert::value_from_json;
use jobqueue::proto::{
    self, ChainStatus, chain_service_client::ChainServiceClient,
    contract_service_client::ContractServiceClient,
};
use serde_json::Value;
use tonic::transport::Channel;

use super::Target;

pub type Chains = ChainServiceClient<Channel>;
pub type Contracts = ContractServiceClient<Channel>;

pub async fn chains(addr: std::net::SocketAddr) -> Chains {
    Chains::connect(format!("http://{addr}")).await.unwrap()
}

pub async fn contracts(addr: std::net::SocketAddr) -> Contracts {
    Contracts::connect(format!("http://{addr}")).await.unwrap()
}

/// A URL of the target that answers `body` as JSON.
pub fn answering(target: &Target, path: &str, body: &Value) -> String {
    target.url(&format!(
        "{path}?json={}",
        testkit::percent_encoded(&body.to_string())
    ))
}

pub fn step(id: &str, method: &str, url: String) -> proto::ChainStep {
    proto::ChainStep {
        id: id.into(),
        request: Some(proto::HttpRequest {
            method: method.into(),
            url,
            ..Default::default()
        }),
        max_attempts: Some(1),
        ..Default::default()
    }
}

pub fn with_body(mut step: proto::ChainStep, body: Value) -> proto::ChainStep {
    if let Some(r) = step.request.as_mut() {
        r.body = Some(proto::http_request::Body::Json(value_from_json(body)));
    }
    step
}

pub fn after(mut step: proto::ChainStep, parents: &[&str]) -> proto::ChainStep {
    step.depends_on = Some(proto::Dependencies {
        steps: parents.iter().map(|p| p.to_string()).collect(),
    });
    step
}

pub fn keeping(mut step: proto::ChainStep, contract: &str, version: u32) -> proto::ChainStep {
    step.contract = Some(proto::ContractVersion {
        name: contract.into(),
        version,
    });
    step
}

pub fn chain(steps: Vec<proto::ChainStep>, input: Value) -> proto::ChainSpec {
    proto::ChainSpec {
        steps,
        input: Some(value_from_json(input)),
        ..Default::default()
    }
}

pub async fn submit_chain(client: &mut Chains, spec: proto::ChainSpec) -> proto::Chain {
    client
        .submit_chain(proto::SubmitChainRequest { chain: Some(spec) })
        .await
        .expect("chain accepted")
        .into_inner()
}

pub async fn get_chain(client: &mut Chains, id: &str) -> proto::Chain {
    client
        .get_chain(proto::GetChainRequest { id: id.into() })
        .await
        .expect("chain readable")
        .into_inner()
}

/// Waits until the chain has ended; panics after `within`.
pub async fn wait_chain(client: &mut Chains, id: &str, within: Duration) -> proto::Chain {
    let until = Instant::now() + within;
    loop {
        let chain = get_chain(client, id).await;
        if chain.status != ChainStatus::Running as i32 {
            return chain;
        }
        assert!(
            Instant::now() < until,
            "chain {id} still running: {chain:#?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub async fn create_contract(
    contracts: &mut Contracts,
    name: &str,
    input: Option<Value>,
    output: Option<Value>,
    allow_breaking: bool,
) -> u32 {
    contracts
        .create_contract(proto::CreateContractRequest {
            contract: Some(proto::Contract {
                name: name.into(),
                description: format!("{name}, as the chain tests use it"),
                input_schema: input.map(value_from_json),
                output_schema: output.map(value_from_json),
                ..Default::default()
            }),
            allow_breaking,
        })
        .await
        .expect("contract created")
        .into_inner()
        .version
}

pub fn step_of<'a>(chain: &'a proto::Chain, id: &str) -> &'a proto::StepState {
    chain
        .steps
        .iter()
        .find(|s| s.id == id)
        .unwrap_or_else(|| panic!("no step {id} in {chain:#?}"))
}

pub fn body_json(received: &testkit::Received) -> Value {
    serde_json::from_slice(&received.body).expect("a JSON body")
}

pub async fn no_chains(client: &mut Chains) {
    let page = client
        .list_chains(proto::ListChainsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(page.chains.is_empty(), "nothing stored: {:#?}", page.chains);
}
