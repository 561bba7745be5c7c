//! ChainService rows: chains naming what only alpha has, and beta reading,
//! listing, watching and changing alpha's chains.

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::sync::Arc;

use crate::callers::*;
use crate::common::chains::{chain, keeping, step};
use crate::common::*;
use crate::probes::*;
use crate::setup::*;
use jobqueue::api::convert::value_from_json;
use jobqueue::proto::{self, ChainStatus};
use serde_json::json;
use tonic::{Code, Status};

/// A one-step chain of `emails` calling `/beta/probe`.
fn probe_chain(target: &Target) -> proto::ChainSpec {
    in_emails(chain(
        vec![step("a", "GET", target.url("/beta/probe"))],
        json!(null),
    ))
}

/// The ways a chain names what only alpha has, each spec built from the name.
type Naming = (&'static str, fn(&Target, &str) -> proto::ChainSpec);

fn namings() -> Vec<Naming> {
    vec![
        ("a step keeping a contract only alpha has", |t, name| {
            in_emails(chain(
                vec![keeping(step("a", "GET", t.url("/beta/probe")), name, 0)],
                json!(null),
            ))
        }),
        ("an input keeping a contract only alpha has", |t, name| {
            let mut spec = probe_chain(t);
            spec.input = Some(value_from_json(json!({"id": 1})));
            spec.input_contract = contract_version(name, 0);
            spec
        }),
        ("a step from a template only alpha has", |_, name| {
            in_emails(chain(
                vec![template_step("a", name, json!({"id": 1}))],
                json!(null),
            ))
        }),
    ]
}

/// A chain whose steps run in queue `name`.
fn chain_in(target: &Target, name: &str) -> proto::ChainSpec {
    let mut spec = probe_chain(target);
    spec.queue = name.into();
    spec
}

/// How a chain ended, as its namespace may know it: `name` swapped out.
fn ending(chain: &proto::Chain, name: &str) -> Vec<(i32, i32, String)> {
    chain
        .steps
        .iter()
        .map(|s| (chain.status, s.status, s.reason.replace(name, "<name>")))
        .collect()
}

/// Checks that `real`, an answer naming another namespace's object, is the
/// answer naming `fake`, which never was: refused alike, or, when both are
/// answered, the same answer once the names are swapped.
#[track_caller]
fn answered_alike<T: Debug>(
    what: &str,
    real: Result<T, Status>,
    real_name: &str,
    fake: Result<T, Status>,
    fake_name: &str,
) {
    match (real, fake) {
        (Ok(real), Ok(fake)) => assert_eq!(
            format!("{real:?}").replace(real_name, "<name>"),
            format!("{fake:?}").replace(fake_name, "<name>"),
            "{what}: the answer tells {real_name} of another namespace from a made-up {fake_name}"
        ),
        (real, fake) => refused_alike(
            &[Code::NotFound, Code::InvalidArgument],
            what,
            real,
            real_name,
            fake,
            fake_name,
        ),
    }
}

/// A chain whose input keeps `order` at `version` and whose step calls
/// `notify`, with inputs that fit beta's contract and not alpha's.
fn betas_order_chain(version: u32, key: &str) -> proto::ChainSpec {
    let mut spec = in_emails(chain(
        vec![template_step("n", "notify", json!({"name": key}))],
        json!({"name": key}),
    ));
    spec.input_contract = contract_version("order", version);
    spec
}

pub async fn submit_chain(w: Arc<World>) {
    let (alpha, beta, t) = (&w.alpha, &w.beta, &w.target);
    for (who, own, other) in [
        (beta, &w.b.chain, &w.a.chain),
        (alpha, &w.a.chain, &w.b.chain),
        (&w.alpha2, &w.a.chain, &w.b.chain),
    ] {
        let again = call!(
            who,
            chains.submit_chain(proto::SubmitChainRequest {
                chain: Some(k1_chain(t, who.ns))
            })
        )
        .unwrap_or_else(|e| panic!("{} resubmits its chain `k-1`: {e:?}", who.label));
        assert!(
            again.existing && &again.id == own,
            "{}'s chain `k-1` must answer its namespace's chain {own} (existing), never {other}: {again:?}",
            who.label
        );
    }
    let fresh = || proto::SubmitChainRequest {
        chain: Some(proto::ChainSpec {
            idempotency_key: "k-fresh".into(),
            ..probe_chain(t)
        }),
    };
    let first = call!(alpha, chains.submit_chain(fresh())).expect("alpha's chain k-fresh");
    let second = call!(beta, chains.submit_chain(fresh())).expect("beta's chain k-fresh");
    assert!(
        !first.existing && !second.existing && first.id != second.id,
        "LEAK: beta's first chain `k-fresh` must be beta's own, not alpha's {}: {second:?}",
        first.id
    );
    for (what, spec) in namings() {
        hidden!(
            [Code::NotFound, Code::InvalidArgument],
            format!("SubmitChain with {what}"),
            ONLY,
            NOBODY,
            |name| call!(
                beta,
                chains.submit_chain(proto::SubmitChainRequest {
                    chain: Some(spec(t, &name))
                })
            )
        );
    }
    // A queue is looked up when a step starts: a chain in alpha's queue ends as
    // one in a queue nobody has (or both are refused alike).
    let mut endings = Vec::new();
    for name in [ONLY, NOBODY] {
        let made = call!(
            beta,
            chains.submit_chain(proto::SubmitChainRequest {
                chain: Some(chain_in(t, name))
            })
        );
        endings.push(match made {
            Ok(made) => Ok(ending(&wait_chain_of(beta, &made.id).await, name)),
            Err(refused) => Err(refused),
        });
    }
    let fake = endings.pop().unwrap();
    let real = endings.pop().unwrap();
    if let Ok(steps) = &real {
        for (_, _, reason) in steps {
            assert!(
                !reason.contains("alpha/") && !reason.contains("beta/"),
                "SubmitChain: a step's reason names a queue qualified: {reason}"
            );
        }
        assert!(
            steps
                .iter()
                .all(|(_, step, _)| *step != proto::StepStatus::Succeeded as i32),
            "LEAK: beta's chain ran its step in alpha's queue {ONLY}: {steps:?}"
        );
    }
    answered_alike(
        "SubmitChain with its steps in a queue only alpha has",
        real,
        ONLY,
        fake,
        NOBODY,
    );
    let second_version = call!(
        beta,
        chains.submit_chain(proto::SubmitChainRequest {
            chain: Some(betas_order_chain(2, "chain-b2"))
        })
    );
    assert!(
        second_version.is_err(),
        "LEAK: beta's chain kept alpha's `order` version 2: {second_version:?}"
    );
    let made = call!(
        beta,
        chains.submit_chain(proto::SubmitChainRequest {
            chain: Some(betas_order_chain(0, "chain-b"))
        })
    )
    .unwrap_or_else(|e| {
        panic!("beta's chain keeping its own `order` and calling its own `notify` (inputs that fit beta's contract only) was refused: {e:?}")
    });
    assert_eq!(
        made.input_contract,
        contract_version("order", 1),
        "beta's `order` is at version 1 (alpha's at 2)"
    );
    let ended = wait_chain_of(beta, &made.id).await;
    assert_eq!(ended.status, ChainStatus::Succeeded as i32, "{ended:#?}");
    let n = &ended.steps[0];
    let url = &n.request.as_ref().expect("the call sent").url;
    assert!(
        url.contains("/beta/notify/chain-b"),
        "beta's template: {url}"
    );
    assert_eq!(n.contract, contract_version("order", 1));
    assert_eq!(t.received_on("/beta/notify/chain-b").len(), 1);
    assert_eq!(read_job(beta, &n.job_id).await.queue, "emails");
}

pub async fn check_chain(w: Arc<World>) {
    let (beta, t) = (&w.beta, &w.target);
    let check = call!(
        beta,
        chains.check_chain(proto::CheckChainRequest {
            chain: Some(betas_order_chain(0, "checked"))
        })
    )
    .unwrap_or_else(|e| {
        panic!("beta's check of a chain fitting its own `order` and `notify` was refused (checked against alpha's?): {e:?}")
    });
    assert!(check.accepted, "{check:#?}");
    let mut namings = namings();
    namings.push(("its steps in a queue only alpha has", chain_in));
    for (what, spec) in namings {
        let check = |name: &str| proto::CheckChainRequest {
            chain: Some(spec(t, name)),
        };
        answered_alike(
            &format!("CheckChain with {what}"),
            call!(beta, chains.check_chain(check(ONLY))),
            ONLY,
            call!(beta, chains.check_chain(check(NOBODY))),
            NOBODY,
        );
    }
    let second_version = call!(
        beta,
        chains.check_chain(proto::CheckChainRequest {
            chain: Some(betas_order_chain(2, "checked"))
        })
    );
    assert!(
        second_version.is_err(),
        "LEAK: beta's check used alpha's `order` version 2: {second_version:?}"
    );
}

impl World {
    fn alpha_chains(&self) -> Vec<(&'static str, &str)> {
        let mut chains = self.a.chains();
        chains.push(("chain waiting in a paused queue", &self.only.held_chain));
        chains
    }
}

pub async fn get_chain(w: Arc<World>) {
    let (alpha, beta) = (&w.alpha, &w.beta);
    let fake = made_up_chain();
    for (what, id) in w.alpha_chains() {
        hidden!(
            format!("GetChain of alpha's {what}"),
            id,
            &fake,
            |id| call!(beta, chains.get_chain(proto::GetChainRequest { id }))
        );
    }
    hidden!(
        "GetChain of beta's chain, by alpha",
        &w.b.chain,
        &fake,
        |id| call!(alpha, chains.get_chain(proto::GetChainRequest { id }))
    );
    read_chain(&w.alpha2, &w.only.held_chain).await;
    let own = read_chain(beta, &w.b.chain).await;
    assert_eq!(own.idempotency_key, "k-1");
}

pub async fn list_chains(w: Arc<World>) {
    let (alpha, beta) = (&w.alpha, &w.beta);
    let ids = |chains: Vec<proto::Chain>| -> BTreeSet<String> {
        chains.into_iter().map(|c| c.id).collect()
    };
    let a = ids(all_pages!(
        alpha,
        chains.list_chains(proto::ListChainsRequest::default()),
        chains
    )
    .expect("alpha's chains"));
    let b = ids(all_pages!(
        beta,
        chains.list_chains(proto::ListChainsRequest::default()),
        chains
    )
    .expect("beta's chains"));
    let both: Vec<&String> = a.intersection(&b).collect();
    assert!(
        both.is_empty(),
        "LEAK: ListChains lists these chains to both namespaces: {both:?}"
    );
    for (what, id) in w.alpha_chains() {
        assert!(
            !b.contains(id),
            "LEAK: ListChains shows beta alpha's {what}"
        );
        assert!(a.contains(id), "alpha lists its {what}");
    }
    for (what, id) in w.b.chains() {
        assert!(
            !a.contains(id),
            "LEAK: ListChains shows alpha beta's {what}"
        );
    }
    let token = call!(
        alpha,
        chains.list_chains(proto::ListChainsRequest {
            page_size: 1,
            ..Default::default()
        })
    )
    .expect("alpha's first page")
    .next_page_token;
    assert!(!token.is_empty(), "alpha has more than one chain");
    if let Ok(page) = call!(
        beta,
        chains.list_chains(proto::ListChainsRequest {
            page_size: 1000,
            page_token: token,
            ..Default::default()
        })
    ) {
        let leaked: Vec<&String> = page
            .chains
            .iter()
            .map(|c| &c.id)
            .filter(|id| a.contains(*id))
            .collect();
        assert!(
            leaked.is_empty(),
            "LEAK: alpha's page token shows beta alpha's chains {leaked:?}"
        );
    }
}

/// What a chain watch that must be refused did (see `watch_refusal`).
async fn chain_watch_refusal(who: &Caller, id: String) -> Result<String, Status> {
    let mut events = call!(who, chains.watch_chain(proto::WatchChainRequest { id }))?;
    match tokio::time::timeout(SILENCE, events.message()).await {
        Ok(Err(status)) => Err(status),
        Ok(Ok(Some(event))) => Ok(format!("the event {event:?}")),
        Ok(Ok(None)) => Ok("a stream that ended cleanly".into()),
        Err(_) => Ok(format!("a stream still open after {SILENCE:?}")),
    }
}

pub async fn watch_chain(w: Arc<World>) {
    let (alpha, beta) = (&w.alpha, &w.beta);
    let fake = made_up_chain();
    for (what, id) in w.alpha_chains() {
        hidden!(format!("WatchChain of alpha's {what}"), id, &fake, |id| {
            chain_watch_refusal(beta, id).await
        });
    }
    hidden!(
        "WatchChain of beta's chain, by alpha",
        &w.b.chain,
        &fake,
        |id| chain_watch_refusal(alpha, id).await
    );
    let mut events = call!(
        w.alpha2,
        chains.watch_chain(proto::WatchChainRequest {
            id: w.only.held_chain.clone()
        })
    )
    .expect("alpha's second key follows alpha's chain");
    let first = tokio::time::timeout(SOON, events.message())
        .await
        .expect("a snapshot at once")
        .expect("the stream holds")
        .expect("a first event");
    assert_eq!(
        first.chain.map(|c| c.id),
        Some(w.only.held_chain.clone()),
        "the snapshot of alpha's chain"
    );
}

/// Runs a change by beta on each of alpha's chains (and by alpha on beta's):
/// each must be refused as for a chain that never was, and leave it as it was.
macro_rules! chain_change {
    ($w:expr, $rpc:literal, |$who:ident, $id:ident| $call:expr) => {{
        let w: &World = &$w;
        let fake = made_up_chain();
        let mut cases: Vec<(&Caller, &Caller, String, &str)> = w
            .alpha_chains()
            .into_iter()
            .map(|(what, id)| (&w.beta, &w.alpha, format!("alpha's {what}"), id))
            .collect();
        for (what, id) in w.b.chains() {
            cases.push((&w.alpha, &w.beta, format!("beta's {what}, by alpha"), id));
        }
        for (asker, owner, what, id) in cases {
            let before = read_chain(owner, id).await;
            let $who = asker;
            hidden!(format!("{} of {what}", $rpc), id, &fake, |$id| $call);
            let after = read_chain(owner, id).await;
            assert_eq!(
                before, after,
                "LEAK: {} by another namespace changed {what}",
                $rpc
            );
        }
    }};
}

pub async fn cancel_chain(w: Arc<World>) {
    chain_change!(w, "CancelChain", |who, id| call!(
        who,
        chains.cancel_chain(proto::CancelChainRequest { id })
    ));
}

pub async fn retry_chain(w: Arc<World>) {
    chain_change!(w, "RetryChain", |who, id| call!(
        who,
        chains.retry_chain(proto::RetryChainRequest { id })
    ));
}
