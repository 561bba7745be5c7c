//! ContractService and TemplateService rows: beta making, reading, listing and
//! deactivating contracts and templates under alpha's names.

use std::sync::Arc;

use crate::callers::*;
use crate::probes::*;
use crate::setup::*;
use jobqueue::proto;
use serde_json::json;
use tonic::{Code, Status};

fn described(
    mut request: proto::CreateContractRequest,
    description: String,
) -> proto::CreateContractRequest {
    if let Some(c) = request.contract.as_mut() {
        c.description = description;
    }
    request
}

pub async fn create_contract(w: Arc<World>) {
    let (alpha, beta) = (&w.alpha, &w.beta);
    let fresh = |ns: &str| {
        described(
            contract_named("fresh-c", json!({"type": "object"})),
            format!("{ns}'s fresh-c"),
        )
    };
    let a = call!(alpha, contracts.create_contract(fresh("alpha"))).expect("alpha's fresh-c");
    assert_eq!(a.version, 1);
    let b = call!(beta, contracts.create_contract(fresh("beta"))).unwrap_or_else(|e| {
        panic!("LEAK: beta's contract fresh-c, made after alpha's, must be beta's own: {e:?}")
    });
    assert_eq!(
        (b.name.as_str(), b.version),
        ("fresh-c", 1),
        "LEAK: beta's first fresh-c must be its version 1, not follow alpha's"
    );
    let kept = read_contract(alpha, "fresh-c", 0).await;
    assert_eq!(
        (kept.version, kept.description.as_str()),
        (1, "alpha's fresh-c"),
        "LEAK: beta's create changed alpha's fresh-c"
    );
    hidden!(
        [Code::NotFound, Code::InvalidArgument],
        "CreateContract whose schema refers to a contract only alpha has",
        ONLY,
        NOBODY,
        |name| call!(
            beta,
            contracts.create_contract(contract_named(
                "probe",
                json!({"type": "object", "properties": {
                    "x": {"$ref": format!("jobqueue:contract/{name}/1/input")}
                }})
            ))
        )
    );
    let second = call!(
        beta,
        contracts.create_contract(contract_named(
            "probe",
            json!({"properties": {"x": {"$ref": "jobqueue:contract/order/2/input"}}})
        ))
    );
    assert!(
        second.is_err(),
        "LEAK: beta's schema referred to alpha's `order` version 2: {second:?}"
    );
}

pub async fn get_contract(w: Arc<World>) {
    let (alpha, beta) = (&w.alpha, &w.beta);
    let own = read_contract(beta, "order", 0).await;
    assert_eq!(
        (own.version, own.description.as_str()),
        (1, "beta's order"),
        "LEAK: beta's latest `order` must be beta's version 1"
    );
    assert_eq!(read_contract(alpha, "order", 0).await.version, 2);
    let second = call!(
        beta,
        contracts.get_contract(proto::GetContractRequest {
            name: "order".into(),
            version: 2
        })
    );
    assert_eq!(
        second.as_ref().map_err(Status::code).err(),
        Some(Code::NotFound),
        "LEAK: beta read alpha's `order` version 2: {second:?}"
    );
    for version in [0, 1] {
        hidden!(
            format!("GetContract of alpha's alpha-only, version {version}"),
            ONLY,
            NOBODY,
            |name| call!(
                beta,
                contracts.get_contract(proto::GetContractRequest { name, version })
            )
        );
    }
    read_contract(&w.alpha2, ONLY, 0).await;
}

fn alphas_contracts(contracts: &[proto::Contract]) -> Vec<String> {
    contracts
        .iter()
        .filter(|c| c.name == ONLY || c.description.starts_with("alpha's"))
        .map(|c| format!("{}/{}: {}", c.name, c.version, c.description))
        .collect()
}

pub async fn list_contracts(w: Arc<World>) {
    let (alpha, beta) = (&w.alpha, &w.beta);
    let b = all_pages!(
        beta,
        contracts.list_contracts(proto::ListContractsRequest::default()),
        contracts
    )
    .expect("beta's contracts");
    let leaked = alphas_contracts(&b);
    assert!(
        leaked.is_empty(),
        "LEAK: ListContracts shows beta alpha's contracts {leaked:?}"
    );
    for c in &b {
        bare("ListContracts", &c.name);
    }
    let orders: Vec<u32> = b
        .iter()
        .filter(|c| c.name == "order")
        .map(|c| c.version)
        .collect();
    assert_eq!(orders, [1], "beta's `order` has one version");
    let named = |name: &str| proto::ListContractsRequest {
        name: name.into(),
        ..Default::default()
    };
    let real = all_pages!(beta, contracts.list_contracts(named(ONLY)), contracts);
    let fake = all_pages!(beta, contracts.list_contracts(named(NOBODY)), contracts);
    listed_alike(
        "ListContracts of alpha's alpha-only",
        real,
        ONLY,
        fake,
        NOBODY,
    );
    let token = call!(
        alpha,
        contracts.list_contracts(proto::ListContractsRequest {
            page_size: 1,
            ..Default::default()
        })
    )
    .expect("alpha's first page")
    .next_page_token;
    assert!(!token.is_empty(), "alpha has more than one contract");
    if let Ok(page) = call!(
        beta,
        contracts.list_contracts(proto::ListContractsRequest {
            page_size: 1000,
            page_token: token,
            ..Default::default()
        })
    ) {
        let leaked = alphas_contracts(&page.contracts);
        assert!(
            leaked.is_empty(),
            "LEAK: alpha's page token shows beta alpha's contracts {leaked:?}"
        );
    }
}

pub async fn deactivate_contract(w: Arc<World>) {
    let (alpha, beta) = (&w.alpha, &w.beta);
    let before = read_contract(alpha, ONLY, 1).await;
    hidden!(
        "DeactivateContract of alpha's alpha-only version 1",
        ONLY,
        NOBODY,
        |name| call!(
            beta,
            contracts.deactivate_contract(proto::DeactivateContractRequest { name, version: 1 })
        )
    );
    assert_eq!(
        before,
        read_contract(alpha, ONLY, 1).await,
        "LEAK: beta's DeactivateContract changed alpha's alpha-only"
    );
    let before = read_contract(alpha, "order", 2).await;
    let second = call!(
        beta,
        contracts.deactivate_contract(proto::DeactivateContractRequest {
            name: "order".into(),
            version: 2
        })
    );
    assert_eq!(
        second.as_ref().map_err(Status::code).err(),
        Some(Code::NotFound),
        "LEAK: beta deactivated alpha's `order` version 2: {second:?}"
    );
    assert_eq!(before, read_contract(alpha, "order", 2).await);
    for who in [alpha, beta] {
        call!(
            who,
            contracts.create_contract(contract_named("doomed-c", json!({"type": "object"})))
        )
        .unwrap_or_else(|e| panic!("{} creates doomed-c: {e:?}", who.label));
    }
    call!(
        beta,
        contracts.deactivate_contract(proto::DeactivateContractRequest {
            name: "doomed-c".into(),
            version: 1
        })
    )
    .expect("beta deactivates its doomed-c");
    assert!(
        read_contract(alpha, "doomed-c", 1).await.active,
        "LEAK: beta's deactivation of its doomed-c deactivated alpha's"
    );
}

// ---------------------------------------------------------------------------
// TemplateService

pub async fn create_template(w: Arc<World>) {
    let (alpha, beta, t) = (&w.alpha, &w.beta, &w.target);
    let fresh = |ns: &str| {
        let mut template = plain_template(
            "fresh-t",
            t.url(&format!("/{ns}/fresh-t")),
            Some(("order", 0)),
        );
        template.description = format!("{ns}'s fresh-t");
        proto::CreateTemplateRequest {
            template: Some(template),
        }
    };
    let a = call!(alpha, templates.create_template(fresh("alpha"))).expect("alpha's fresh-t");
    assert_eq!((a.version, a.contract), (1, contract_version("order", 2)));
    let b = call!(beta, templates.create_template(fresh("beta"))).unwrap_or_else(|e| {
        panic!("LEAK: beta's template fresh-t, made after alpha's, must be beta's own: {e:?}")
    });
    assert_eq!(
        (b.name.as_str(), b.version),
        ("fresh-t", 1),
        "LEAK: beta's first fresh-t must be its version 1, not follow alpha's"
    );
    assert_eq!(
        b.contract,
        contract_version("order", 1),
        "LEAK: beta's template must pin beta's `order` (version 1), not alpha's (2)"
    );
    let kept = read_template(alpha, "fresh-t", 0).await;
    assert_eq!(
        (kept.version, kept.description.as_str()),
        (1, "alpha's fresh-t"),
        "LEAK: beta's create changed alpha's fresh-t"
    );
    hidden!(
        [Code::NotFound, Code::InvalidArgument],
        "CreateTemplate keeping a contract only alpha has",
        ONLY,
        NOBODY,
        |name| call!(
            beta,
            templates.create_template(proto::CreateTemplateRequest {
                template: Some(plain_template(
                    "probe-t",
                    t.url("/beta/probe"),
                    Some((&name, 0))
                ))
            })
        )
    );
    let second = call!(
        beta,
        templates.create_template(proto::CreateTemplateRequest {
            template: Some(plain_template(
                "probe-t",
                t.url("/beta/probe"),
                Some(("order", 2))
            ))
        })
    );
    assert!(
        second.is_err(),
        "LEAK: beta's template kept alpha's `order` version 2: {second:?}"
    );
}

pub async fn get_template(w: Arc<World>) {
    let (alpha, beta) = (&w.alpha, &w.beta);
    let own = read_template(beta, "notify", 0).await;
    assert_eq!(
        (own.version, own.description.as_str()),
        (1, "beta's notify"),
        "LEAK: beta's `notify` must be beta's: {own:#?}"
    );
    assert_eq!(own.contract, contract_version("order", 1));
    assert!(own.request.as_ref().unwrap().url.contains("/beta/notify/"));
    assert_eq!(own.queue, "emails", "beta's template's queue, bare");
    assert_eq!(
        read_template(alpha, "notify", 0).await.description,
        "alpha's notify"
    );
    for version in [0, 1] {
        hidden!(
            format!("GetTemplate of alpha's alpha-only, version {version}"),
            ONLY,
            NOBODY,
            |name| call!(
                beta,
                templates.get_template(proto::GetTemplateRequest { name, version })
            )
        );
    }
    read_template(&w.alpha2, ONLY, 0).await;
}

fn alphas_templates(templates: &[proto::Template]) -> Vec<String> {
    templates
        .iter()
        .filter(|t| t.name == ONLY || t.description.starts_with("alpha's"))
        .map(|t| format!("{}/{}: {}", t.name, t.version, t.description))
        .collect()
}

pub async fn list_templates(w: Arc<World>) {
    let (alpha, beta) = (&w.alpha, &w.beta);
    let b = all_pages!(
        beta,
        templates.list_templates(proto::ListTemplatesRequest::default()),
        templates
    )
    .expect("beta's templates");
    let leaked = alphas_templates(&b);
    assert!(
        leaked.is_empty(),
        "LEAK: ListTemplates shows beta alpha's templates {leaked:?}"
    );
    for t in &b {
        bare("ListTemplates", &t.name);
        bare("ListTemplates: a template's queue", &t.queue);
        if let Some(c) = &t.contract {
            bare("ListTemplates: a template's contract", &c.name);
        }
    }
    assert!(b.iter().any(|t| t.description == "beta's notify"));
    let named = |name: &str| proto::ListTemplatesRequest {
        name: name.into(),
        ..Default::default()
    };
    let real = all_pages!(beta, templates.list_templates(named(ONLY)), templates);
    let fake = all_pages!(beta, templates.list_templates(named(NOBODY)), templates);
    listed_alike(
        "ListTemplates of alpha's alpha-only",
        real,
        ONLY,
        fake,
        NOBODY,
    );
    let token = call!(
        alpha,
        templates.list_templates(proto::ListTemplatesRequest {
            page_size: 1,
            ..Default::default()
        })
    )
    .expect("alpha's first page")
    .next_page_token;
    assert!(!token.is_empty(), "alpha has more than one template");
    if let Ok(page) = call!(
        beta,
        templates.list_templates(proto::ListTemplatesRequest {
            page_size: 1000,
            page_token: token,
            ..Default::default()
        })
    ) {
        let leaked = alphas_templates(&page.templates);
        assert!(
            leaked.is_empty(),
            "LEAK: alpha's page token shows beta alpha's templates {leaked:?}"
        );
    }
}

pub async fn deactivate_template(w: Arc<World>) {
    let (alpha, beta, t) = (&w.alpha, &w.beta, &w.target);
    let before = read_template(alpha, ONLY, 1).await;
    hidden!(
        "DeactivateTemplate of alpha's alpha-only version 1",
        ONLY,
        NOBODY,
        |name| call!(
            beta,
            templates.deactivate_template(proto::DeactivateTemplateRequest { name, version: 1 })
        )
    );
    assert_eq!(
        before,
        read_template(alpha, ONLY, 1).await,
        "LEAK: beta's DeactivateTemplate changed alpha's alpha-only"
    );
    for who in [alpha, beta] {
        call!(
            who,
            templates.create_template(proto::CreateTemplateRequest {
                template: Some(plain_template("doomed-t", t.url("/doomed"), None))
            })
        )
        .unwrap_or_else(|e| panic!("{} creates doomed-t: {e:?}", who.label));
    }
    call!(
        beta,
        templates.deactivate_template(proto::DeactivateTemplateRequest {
            name: "doomed-t".into(),
            version: 1
        })
    )
    .expect("beta deactivates its doomed-t");
    assert!(
        read_template(alpha, "doomed-t", 1).await.active,
        "LEAK: beta's deactivation of its doomed-t deactivated alpha's"
    );
}
