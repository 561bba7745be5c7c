//! The registry of contracts through the real server: versions, reads, pages,
//! deactivation, references between contracts, and every refusal.

mod common;

use common::*;
use jobqueue::api::convert::value_from_json;
use jobqueue::proto::{self, contract_service_client::ContractServiceClient};
use serde_json::{Value, json};
use tonic::Code;
use tonic::transport::Channel;

type Contracts = ContractServiceClient<Channel>;

async fn contracts(addr: std::net::SocketAddr) -> Contracts {
    Contracts::connect(format!("http://{addr}"))
        .await
        .expect("contract service reachable")
}

fn contract(
    name: &str,
    input: Option<Value>,
    output: Option<Value>,
) -> proto::CreateContractRequest {
    proto::CreateContractRequest {
        contract: Some(proto::Contract {
            name: name.into(),
            description: format!("{name}, as the tests use it"),
            input_schema: input.map(value_from_json),
            output_schema: output.map(value_from_json),
            ..Default::default()
        }),
        allow_breaking: false,
    }
}

fn json_of(value: &Option<prost_types::Value>) -> Value {
    let value = value.as_ref().expect("a schema");
    serde_json::to_value(ValueView(value)).unwrap()
}

/// A `google.protobuf.Value` as plain JSON, for comparing schemas read back.
struct ValueView<'a>(&'a prost_types::Value);

impl serde::Serialize for ValueView<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use prost_types::value::Kind;
        match &self.0.kind {
            None | Some(Kind::NullValue(_)) => s.serialize_unit(),
            Some(Kind::BoolValue(b)) => s.serialize_bool(*b),
            Some(Kind::NumberValue(n)) if n.fract() == 0.0 => s.serialize_i64(*n as i64),
            Some(Kind::NumberValue(n)) => s.serialize_f64(*n),
            Some(Kind::StringValue(v)) => s.serialize_str(v),
            Some(Kind::ListValue(l)) => s.collect_seq(l.values.iter().map(ValueView)),
            Some(Kind::StructValue(st)) => {
                s.collect_map(st.fields.iter().map(|(k, v)| (k, ValueView(v))))
            }
        }
    }
}

/// A version of a contract (the latest for 0), which must exist.
async fn read(registry: &mut Contracts, name: &str, version: u32) -> proto::Contract {
    registry
        .get_contract(proto::GetContractRequest {
            name: name.into(),
            version,
        })
        .await
        .expect("the contract")
        .into_inner()
}

fn order() -> Value {
    json!({
        "type": "object",
        "required": ["id"],
        "properties": {"id": {"type": "integer", "minimum": 1}, "note": {"type": "string"}}
    })
}

fn receipt() -> Value {
    json!({
        "type": "object",
        "required": ["receipt"],
        "properties": {"receipt": {"type": "string", "maxLength": 64}}
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_are_assigned_read_back_listed_and_deactivated() {
    let server = Server::start().await;
    let mut registry = contracts(server.addr).await;
    let v1 = registry
        .create_contract(contract("orders", Some(order()), Some(receipt())))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((v1.version, v1.active), (1, true));
    assert_eq!(json_of(&v1.input_schema), order(), "integers stay integers");
    // Version 2 accepts more (the id may be 0) and promises more (a shorter receipt).
    let mut wider = order();
    wider["properties"]["id"]["minimum"] = json!(0);
    let mut narrower = receipt();
    narrower["properties"]["receipt"]["maxLength"] = json!(32);
    let v2 = registry
        .create_contract(contract("orders", Some(wider.clone()), Some(narrower)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(v2.version, 2);
    let latest = read(&mut registry, "orders", 0).await;
    assert_eq!(latest.version, 2);
    assert_eq!(json_of(&latest.input_schema), wider);
    let first = read(&mut registry, "orders", 1).await;
    assert_eq!(
        json_of(&first.input_schema),
        order(),
        "a version never changes"
    );

    // Deactivated: still readable, marked, and only once.
    let off = registry
        .deactivate_contract(proto::DeactivateContractRequest {
            name: "orders".into(),
            version: 1,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!off.active && off.deactivate_time.is_some());
    let again = registry
        .deactivate_contract(proto::DeactivateContractRequest {
            name: "orders".into(),
            version: 1,
        })
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::FailedPrecondition);
    let missing = registry
        .deactivate_contract(proto::DeactivateContractRequest {
            name: "orders".into(),
            version: 9,
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);

    // Pages, by name then version.
    for name in ["alpha", "zulu"] {
        registry
            .create_contract(contract(name, Some(json!({"type": "object"})), None))
            .await
            .unwrap();
    }
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = registry
            .list_contracts(proto::ListContractsRequest {
                page_size: 2,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        seen.extend(
            page.contracts
                .iter()
                .map(|c| format!("{}/{}", c.name, c.version)),
        );
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen, ["alpha/1", "orders/1", "orders/2", "zulu/1"]);
    let only = registry
        .list_contracts(proto::ListContractsRequest {
            name: "orders".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(only.contracts.len(), 2);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_breaking_version_is_refused_with_each_mismatch_unless_meant() {
    let server = Server::start().await;
    let mut registry = contracts(server.addr).await;
    registry
        .create_contract(contract("orders", Some(order()), Some(receipt())))
        .await
        .unwrap();
    // The input now requires a note (accepts less); the output may omit the
    // receipt (promises less).
    let mut stricter = order();
    stricter["required"] = json!(["id", "note"]);
    let mut looser = receipt();
    looser["required"] = json!([]);
    let refused = registry
        .create_contract(contract(
            "orders",
            Some(stricter.clone()),
            Some(looser.clone()),
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    let fields = bad_fields(&refused);
    assert!(
        fields.contains(&"contract.input_schema/required".to_string())
            && fields
                .iter()
                .any(|f| f.starts_with("contract.output_schema")),
        "{fields:?} {refused:?}"
    );
    assert!(refused.message().contains("allow_breaking"), "{refused:?}");
    // Nothing stored.
    let latest = read(&mut registry, "orders", 0).await;
    assert_eq!(latest.version, 1);
    // Meant: created.
    let mut meant = contract("orders", Some(stricter), Some(looser));
    meant.allow_breaking = true;
    let v2 = registry.create_contract(meant).await.unwrap().into_inner();
    assert_eq!(v2.version, 2);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn references_stay_inside_the_registry_and_name_active_versions() {
    let server = Server::start().await;
    let mut registry = contracts(server.addr).await;
    registry
        .create_contract(contract(
            "ids",
            None,
            Some(json!({"type": "integer", "minimum": 1})),
        ))
        .await
        .unwrap();
    let user = json!({
        "type": "object",
        "properties": {"id": {"$ref": "jobqueue:contract/ids/1/output"}}
    });
    registry
        .create_contract(contract("users", Some(user.clone()), None))
        .await
        .expect("a reference to another contract's schema");
    // Unknown version: NOT_FOUND; a schema it does not have, or a deactivated
    // version: INVALID_ARGUMENT.
    let unknown = json!({"properties": {"id": {"$ref": "jobqueue:contract/ids/7/output"}}});
    let refused = registry
        .create_contract(contract("users", Some(unknown), None))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::NotFound, "{refused:?}");
    let absent = json!({"properties": {"id": {"$ref": "jobqueue:contract/ids/1/input"}}});
    let refused = registry
        .create_contract(contract("users", Some(absent), None))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    registry
        .deactivate_contract(proto::DeactivateContractRequest {
            name: "ids".into(),
            version: 1,
        })
        .await
        .unwrap();
    let refused = registry
        .create_contract(contract("others", Some(user), None))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    assert!(refused.message().contains("deactivated"), "{refused:?}");
    // What already refers to it keeps working.
    let kept = read(&mut registry, "users", 1).await;
    assert!(kept.active);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_documents_are_refused_naming_the_field_and_store_nothing() {
    let server = Server::start().await;
    let mut registry = contracts(server.addr).await;
    let cases: Vec<(proto::CreateContractRequest, &str)> = vec![
        (contract("Bad Name", Some(json!({})), None), "contract.name"),
        (contract("empty", None, None), "contract"),
        (
            contract("typo", Some(json!({"type": "integr"})), None),
            "contract.input_schema/type",
        ),
        (
            contract(
                "bounds",
                None,
                Some(json!({"properties": {"n": {"minimum": "one"}}})),
            ),
            "contract.output_schema/properties/n/minimum",
        ),
        (
            contract(
                "remote",
                Some(json!({"properties": {"x": {"$ref": "https://example.com/s.json"}}})),
                None,
            ),
            "contract.input_schema/properties/x/$ref",
        ),
        (
            contract("disk", Some(json!({"$ref": "file:///etc/passwd"})), None),
            "contract.input_schema/$ref",
        ),
        (
            contract(
                "backtracking",
                Some(json!({"type": "string", "pattern": "^(a)\\1$"})),
                None,
            ),
            "contract.input_schema",
        ),
    ];
    for (request, field) in cases {
        let name = request.contract.as_ref().unwrap().name.clone();
        let refused = registry.create_contract(request).await.unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument, "{name}: {refused:?}");
        let fields = bad_fields(&refused);
        assert!(
            fields.iter().any(|f| f.starts_with(field)),
            "{name}: {fields:?} in {refused:?}"
        );
    }
    let mut with_version = contract("versioned", Some(json!({})), None);
    with_version.contract.as_mut().unwrap().version = 3;
    let refused = registry.create_contract(with_version).await.unwrap_err();
    assert_eq!(bad_fields(&refused), ["contract.version"]);
    // Unicode classes are fine.
    registry
        .create_contract(contract(
            "letters",
            Some(json!({"type": "string", "pattern": "^\\p{L}+$"})),
            None,
        ))
        .await
        .expect("\\p{L} compiles");
    let all = registry
        .list_contracts(proto::ListContractsRequest::default())
        .await
        .unwrap()
        .into_inner();
    let names: Vec<&str> = all.contracts.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["letters"], "nothing refused was stored");
    server.stop().await;
}
