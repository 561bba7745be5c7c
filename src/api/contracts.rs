//! `ContractService`: the registry of contracts. Schemas are checked here, off the
//! writer: against the draft-07 meta-schema, for references that stay inside the
//! registry, by compiling them, and a new version against the latest one; the
//! writer then appends it only if no other version came in between.

use serde_json::Value;
use tonic::{Code, Request, Response, Status};
use tonic_types::{ErrorDetails, StatusExt};

use super::convert::{self, json_from_value, timestamp, value_from_json};
use super::{Violations, invalid, versions};
use crate::auth::Caller;
use crate::contract::compat::{self, Verdict};
use crate::contract::registry::{self, Documents, Part};
use crate::engine::{ContractChange, Engine};
use crate::namespace::{local, qualify};
use crate::proto::{self, contract_service_server::ContractService};
use crate::store::contracts;

const PAGE_TOKEN_PREFIX: &str = "contracts-after:";
/// Largest schema document, as JSON text.
const MAX_SCHEMA_BYTES: usize = 256 << 10;
const MAX_DESCRIPTION_BYTES: usize = 4096;

pub struct ContractApi {
    engine: Engine,
}

impl ContractApi {
    pub fn new(engine: Engine) -> Self {
        ContractApi { engine }
    }

    /// The documents `schemas` refer to, read from the registry; a reference to a
    /// version that does not exist is NOT_FOUND, to a schema the contract does not
    /// have INVALID_ARGUMENT, and so is one to an inactive version when `new`
    /// (what is already stored keeps the references it has), each naming `field`.
    /// References are to contracts of `namespace`.
    async fn documents(
        &self,
        namespace: &str,
        schemas: &[(&str, &Value)],
        new: bool,
    ) -> Result<Documents, Status> {
        let mut documents = Documents::default();
        for (field, schema) in schemas {
            let references = registry::references(schema)
                .map_err(|p| invalid(format!("{field}{}", p.pointer), p.message))?;
            for reference in references {
                let found = self
                    .engine
                    .store()
                    .contract(namespace, &reference.name, Some(reference.version))
                    .await?;
                let Some(found) = found else {
                    return Err(Status::not_found(format!(
                        "{field}: $ref {}: contract {} version {} not found",
                        reference.uri(),
                        reference.name,
                        reference.version
                    )));
                };
                if new && !found.active {
                    return Err(invalid(
                        *field,
                        format!(
                            "$ref {}: that version is deactivated; refer to an active one",
                            reference.uri()
                        ),
                    ));
                }
                let text = match reference.part {
                    Part::Input => found.input_schema,
                    Part::Output => found.output_schema,
                };
                let Some(text) = text else {
                    return Err(invalid(
                        *field,
                        format!("$ref {}: the contract has no such schema", reference.uri()),
                    ));
                };
                let document = serde_json::from_str(&text)
                    .map_err(|e| Status::internal(format!("stored schema: {e}")))?;
                documents.insert(&reference, document);
            }
        }
        Ok(documents)
    }
}

/// A schema as the request carries it, in plain JSON (whole numbers as integers).
fn schema_json(value: &prost_types::Value) -> Option<Value> {
    json_from_value(value)
}

fn contract_proto(c: contracts::Model) -> proto::Contract {
    let schema = |text: Option<String>| {
        text.and_then(|t| serde_json::from_str(&t).ok())
            .map(value_from_json)
    };
    proto::Contract {
        name: local(&c.name).to_string(),
        version: c.version as u32,
        description: c.description,
        input_schema: schema(c.input_schema),
        output_schema: schema(c.output_schema),
        active: c.active,
        create_time: Some(timestamp(c.created_at)),
        deactivate_time: c.deactivated_at.map(timestamp),
    }
}

/// Which schema a compatibility check compared.
#[derive(Clone, Copy)]
enum Compared {
    /// The older input is the producer of what the newer must take.
    Input,
    /// The newer output is the producer of what the older promised.
    Output,
}

/// The findings of a compatibility check as field violations.
fn breaks(
    compared: Compared,
    fit: &compat::Fit,
    older: &str,
    newer: &str,
    details: &mut ErrorDetails,
) {
    for f in &fit.findings {
        let (field, at_old, at_new) = match compared {
            Compared::Input => ("contract.input_schema", &f.producer, &f.consumer),
            Compared::Output => ("contract.output_schema", &f.consumer, &f.producer),
        };
        details.add_bad_request_violation(
            format!(
                "{field}{}",
                if at_new == "/" { "" } else { at_new.as_str() }
            ),
            format!(
                "{}: {older} at {at_old} expects {}, {newer} at {at_new} allows {}",
                f.verdict.as_str(),
                f.expected,
                f.found
            ),
        );
    }
}

#[tonic::async_trait]
impl ContractService for ContractApi {
    async fn create_contract(
        &self,
        request: Request<proto::CreateContractRequest>,
    ) -> Result<Response<proto::Contract>, Status> {
        let namespace = Caller::namespace_of(&request);
        let proto::CreateContractRequest {
            contract,
            allow_breaking,
        } = request.into_inner();
        let Some(contract) = contract else {
            return Err(invalid("contract", "required"));
        };
        let mut v = Violations::default();
        if !convert::valid_name(&contract.name) {
            v.add("contract.name", convert::NAME_RULE);
        }
        if contract.version != 0 {
            v.add("contract.version", "must be unset: versions are assigned");
        }
        if contract.description.len() > MAX_DESCRIPTION_BYTES {
            v.add(
                "contract.description",
                format!("at most {MAX_DESCRIPTION_BYTES} bytes"),
            );
        }
        let mut schemas: Vec<(&str, Value)> = Vec::new();
        for (field, value) in [
            ("contract.input_schema", &contract.input_schema),
            ("contract.output_schema", &contract.output_schema),
        ] {
            let Some(value) = value else { continue };
            match schema_json(value) {
                Some(json) if json.to_string().len() > MAX_SCHEMA_BYTES => {
                    v.add(field, format!("at most {MAX_SCHEMA_BYTES} bytes of JSON"))
                }
                Some(json) => schemas.push((field, json)),
                None => v.add(field, "a JSON value (numbers must be finite)"),
            }
        }
        if contract.input_schema.is_none() && contract.output_schema.is_none() {
            v.add("contract", "set input_schema, output_schema or both");
        }
        v.into_result(())?;
        let refs: Vec<(&str, &Value)> = schemas.iter().map(|(f, s)| (*f, s)).collect();
        let documents = self.documents(&namespace, &refs, true).await?;
        let mut v = Violations::default();
        for (field, schema) in &schemas {
            if let Err(problem) = registry::check(schema, &documents) {
                v.add(format!("{field}{}", problem.pointer), problem.message);
            }
        }
        v.into_result(())?;
        let input = schemas
            .iter()
            .find(|(f, _)| *f == "contract.input_schema")
            .map(|(_, s)| s.clone());
        let output = schemas
            .iter()
            .find(|(f, _)| *f == "contract.output_schema")
            .map(|(_, s)| s.clone());

        // Against the latest version: the input may only accept more, the output
        // may only promise more. A schema left unset says nothing: it takes or
        // promises anything.
        let latest = self
            .engine
            .store()
            .contract(&namespace, &contract.name, None)
            .await?;
        if let Some(latest) = &latest
            && !allow_breaking
        {
            let parse = |text: &Option<String>| {
                text.as_deref()
                    .and_then(|t| serde_json::from_str::<Value>(t).ok())
                    .unwrap_or(Value::Bool(true))
            };
            let (old_in, old_out) = (parse(&latest.input_schema), parse(&latest.output_schema));
            let (new_in, new_out) = (
                input.clone().unwrap_or(Value::Bool(true)),
                output.clone().unwrap_or(Value::Bool(true)),
            );
            let both = self
                .documents(
                    &namespace,
                    &[
                        ("contract.input_schema", &old_in),
                        ("contract.output_schema", &old_out),
                    ],
                    false,
                )
                .await?;
            let mut documents = documents.clone();
            documents.extend(both);
            let inputs = compat::fits(&old_in, &new_in, &documents);
            let outputs = compat::fits(&new_out, &old_out, &documents);
            if inputs.verdict() != Verdict::Yes || outputs.verdict() != Verdict::Yes {
                let older = format!("version {}", latest.version);
                let newer = "the new version";
                let mut details = ErrorDetails::new();
                breaks(Compared::Input, &inputs, &older, newer, &mut details);
                breaks(Compared::Output, &outputs, &older, newer, &mut details);
                let count = inputs.findings.len() + outputs.findings.len();
                return Err(Status::with_error_details(
                    Code::FailedPrecondition,
                    format!(
                        "the new version of {} breaks {older} in {count} place(s); \
                         set allow_breaking to create it anyway",
                        contract.name
                    ),
                    details,
                ));
            }
        }
        let row = contracts::Model {
            name: qualify(&namespace, &contract.name),
            version: 0,
            namespace,
            description: contract.description,
            input_schema: input.map(|s| s.to_string()),
            output_schema: output.map(|s| s.to_string()),
            active: true,
            created_at: 0,
            deactivated_at: None,
        };
        let created = self
            .engine
            .change_contract(ContractChange::Create {
                contract: Box::new(row),
                after: latest.map(|l| l.version),
            })
            .await?;
        Ok(Response::new(contract_proto(created)))
    }

    async fn get_contract(
        &self,
        request: Request<proto::GetContractRequest>,
    ) -> Result<Response<proto::Contract>, Status> {
        let namespace = Caller::namespace_of(&request);
        let proto::GetContractRequest { name, version } = request.into_inner();
        let version = versions::version_asked(&name, version)?;
        match self
            .engine
            .store()
            .contract(&namespace, &name, version)
            .await?
        {
            Some(found) => Ok(Response::new(contract_proto(found))),
            None => Err(versions::not_found("contract", &name, version)),
        }
    }

    async fn list_contracts(
        &self,
        request: Request<proto::ListContractsRequest>,
    ) -> Result<Response<proto::ListContractsResponse>, Status> {
        let namespace = Caller::namespace_of(&request);
        let proto::ListContractsRequest {
            name,
            page_size,
            page_token,
        } = request.into_inner();
        let asked = versions::page_asked(
            name,
            page_size,
            &page_token,
            PAGE_TOKEN_PREFIX,
            "ListContracts",
        )?;
        let mut page = self
            .engine
            .store()
            .list_contracts(
                &namespace,
                asked.only.as_deref(),
                asked.after.as_ref().map(|(n, v)| (n.as_str(), *v)),
                asked.size as u64 + 1,
            )
            .await?;
        let next_page_token =
            convert::versions_page_end(&mut page, asked.size, PAGE_TOKEN_PREFIX, |r| {
                (local(&r.name), r.version)
            });
        Ok(Response::new(proto::ListContractsResponse {
            contracts: page.into_iter().map(contract_proto).collect(),
            next_page_token,
        }))
    }

    async fn deactivate_contract(
        &self,
        request: Request<proto::DeactivateContractRequest>,
    ) -> Result<Response<proto::Contract>, Status> {
        let namespace = Caller::namespace_of(&request);
        let proto::DeactivateContractRequest { name, version } = request.into_inner();
        let version = versions::deactivation_asked(&name, version)?;
        let name = qualify(&namespace, &name);
        let deactivated = self
            .engine
            .change_contract(ContractChange::Deactivate { name, version })
            .await?;
        Ok(Response::new(contract_proto(deactivated)))
    }
}
