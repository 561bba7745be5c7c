//! A submitted chain, checked before it is stored: each step's fields as a job's
//! are (with its references standing in for values), the graph of its steps,
//! its references' reach, the contracts it names (each version pinned), its input
//! against its input contract, and every wire's fit. The report is what
//! CheckChain answers and what SubmitChain refuses with.

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;
use tonic::Status;

use super::Violations;
use super::convert::{self, Limits, json_from_value};
use super::templates::UsedTemplate;
use crate::chain::check::{self, Schemas, StepWire};
use crate::chain::definition::{
    BodyTemplate, CallTemplate, Definition, Pinned, RunIfName, StepDef, StepJob, without_references,
};
use crate::chain::graph::{self, Node, RunIf};
use crate::chain::reference::references_in;
use crate::contract::compat::Verdict;
use crate::contract::library::{Library, LibraryError, Loaded};
use crate::contract::registry::{Documents, Part};
use crate::contract::validate::violations;
use crate::namespace::{local, qualify};
use crate::proto;
use crate::store::Store;

/// A chain's input, as JSON text, at most this long.
const MAX_INPUT_BYTES: usize = 1 << 20;

/// A chain that passed every check but its wiring's verdict.
pub struct Checked {
    pub definition: Definition,
    pub input: Value,
    pub tags: Vec<String>,
    pub ttl_ms: i64,
    pub idempotency_key: Option<String>,
    pub mode: proto::WiringCheck,
    /// Where the chain stands in its request: `chain`, `schedule.chain`.
    pub at: String,
    /// Every reference's fit (none when the check is off).
    pub wires: Vec<StepWire>,
    pub order: Vec<String>,
}

impl Checked {
    /// Whether the wiring passes under the chain's check setting.
    pub fn accepted(&self) -> bool {
        self.wires.iter().all(|w| match w.wire.verdict {
            Verdict::Yes => true,
            Verdict::CannotTell => self.mode != proto::WiringCheck::Strict,
            Verdict::No => false,
        })
    }

    /// The refusal that lists every wire that does not pass.
    pub fn refusal(&self) -> Status {
        let mut v = Violations::default();
        for w in &self.wires {
            let refused = match w.wire.verdict {
                Verdict::Yes => false,
                Verdict::CannotTell => self.mode == proto::WiringCheck::Strict,
                Verdict::No => true,
            };
            if !refused {
                continue;
            }
            let field = format!(
                "{}.steps[{}].{}{}",
                self.at,
                w.step,
                w.field,
                if w.wire.at == "/" { "" } else { &w.wire.at }
            );
            for f in &w.wire.findings {
                v.add(
                    field.clone(),
                    format!(
                        "{{{{ {} }}}} ({}): expected {}, found {} (producer schema at {}, consumer schema at {})",
                        w.wire.reference,
                        f.verdict.as_str(),
                        f.expected,
                        f.found,
                        f.producer,
                        f.consumer
                    ),
                );
            }
        }
        v.into()
    }

    pub fn report(&self) -> proto::ChainCheck {
        proto::ChainCheck {
            accepted: self.accepted(),
            wires: self
                .wires
                .iter()
                .map(|w| proto::Wire {
                    step: self.definition.steps[w.step].id.clone(),
                    field: w.field.clone(),
                    pointer: w.wire.at.clone(),
                    reference: w.wire.reference.clone(),
                    verdict: verdict(w.wire.verdict) as i32,
                    findings: w
                        .wire
                        .findings
                        .iter()
                        .map(|f| proto::WireFinding {
                            verdict: verdict(f.verdict) as i32,
                            producer_pointer: f.producer.clone(),
                            consumer_pointer: f.consumer.clone(),
                            expected: f.expected.clone(),
                            found: f.found.clone(),
                        })
                        .collect(),
                })
                .collect(),
            order: self.order.clone(),
        }
    }
}

fn verdict(v: Verdict) -> proto::WireVerdict {
    match v {
        Verdict::Yes => proto::WireVerdict::Yes,
        Verdict::No => proto::WireVerdict::No,
        Verdict::CannotTell => proto::WireVerdict::CannotTell,
    }
}

/// Checks a chain, which stands at the field `at` of its request; `Err` is the
/// refusal for anything but its wiring.
pub async fn check(
    namespace: &str,
    spec: Option<proto::ChainSpec>,
    at: &str,
    limits: &Limits,
    store: &Store,
    library: &Library,
) -> Result<Checked, Status> {
    let Some(spec) = spec else {
        return Err(super::invalid(at, "required: the chain to run"));
    };
    let proto::ChainSpec {
        steps,
        input,
        input_contract,
        check: mode,
        queue,
        tags,
        ttl,
        idempotency_key,
    } = spec;
    let mut v = Violations::default();
    let input = match &input {
        None => Value::Null,
        Some(value) => json_from_value(value).unwrap_or_else(|| {
            v.add(format!("{at}.input"), "must be JSON (numbers finite)");
            Value::Null
        }),
    };
    if input.to_string().len() > MAX_INPUT_BYTES {
        v.add(
            format!("{at}.input"),
            format!("at most {MAX_INPUT_BYTES} bytes of JSON"),
        );
    }
    let mode = proto::WiringCheck::try_from(mode).unwrap_or_else(|_| {
        v.add(format!("{at}.check"), "must be a WiringCheck value");
        proto::WiringCheck::On
    });
    let tags = convert::checked_tags(tags, at, &mut v);
    convert::check_idempotency_key(&idempotency_key, at, &mut v);
    let ttl_ms = convert::ttl_ms(ttl, at, limits, &mut v);
    let queue = if queue.is_empty() {
        "default".to_string()
    } else {
        queue
    };
    if !convert::valid_name(&queue) {
        v.add(format!("{at}.queue"), convert::NAME_RULE);
    }
    let input_contract = pinned_name(input_contract, &format!("{at}.input_contract"), &mut v);

    // The templates steps name, each version pinned.
    let mut used_templates = HashMap::new();
    for (i, step) in steps.iter().enumerate() {
        if let Some(named) = &step.template {
            let field = format!("{at}.steps[{i}].template");
            let used = super::templates::used(store, namespace, named, &field).await?;
            used_templates.insert(i, used);
        }
    }
    let mut defs = Vec::with_capacity(steps.len());
    let mut nodes = Vec::with_capacity(steps.len());
    let mut named = Vec::with_capacity(steps.len());
    for (i, step) in steps.into_iter().enumerate() {
        let path = format!("{at}.steps[{i}]");
        let id = step.id.clone();
        let template = used_templates.get(&i);
        nodes.push(Node {
            id: id.clone(),
            depends_on: step.depends_on.as_ref().map(|d| d.steps.clone()),
            run_if: match proto::RunIf::try_from(step.run_if) {
                Ok(proto::RunIf::Unspecified | proto::RunIf::OnSuccess) => RunIf::OnSuccess,
                Ok(proto::RunIf::OnFailure) => RunIf::OnFailure,
                Ok(proto::RunIf::Always) => RunIf::Always,
                Err(_) => {
                    v.add(format!("{path}.run_if"), "must be a RunIf value");
                    RunIf::OnSuccess
                }
            },
        });
        named.push(match template {
            // As stored: named again as this namespace knows it.
            Some(t) => t
                .contract
                .as_ref()
                .map(|c| (local(&c.name).to_string(), Some(c.version))),
            None => pinned_name(step.contract.clone(), &format!("{path}.contract"), &mut v),
        });
        let chain_queue = (namespace, queue.as_str());
        if let Some(def) = step_def(step, &path, chain_queue, template, limits, &mut v) {
            defs.push(def);
        }
    }
    let graph = match graph::build(&nodes) {
        Ok(graph) => Some(graph),
        Err(errors) => {
            for e in errors {
                v.add(format!("{at}.{}", e.field), e.message);
            }
            None
        }
    };
    v.into_result(())?;
    let graph = graph.ok_or_else(|| Status::internal("graph not built"))?;
    let mut definition = Definition {
        steps: defs,
        input_contract: None,
    };
    for step in &mut definition.steps {
        step.parents = graph.parents.get(&step.id).cloned().unwrap_or_default();
        step.run_if = graph
            .run_if
            .get(&step.id)
            .copied()
            .unwrap_or_default()
            .into();
    }
    let mut v = Violations::default();
    for (i, field, message) in check::unreachable(&definition, &graph) {
        v.add(format!("{at}.steps[{i}].{field}"), message);
    }
    v.into_result(())?;

    // The contracts, each version pinned.
    let mut loaded: HashMap<(String, Option<i32>), Loaded> = HashMap::new();
    let mut load =
        async |name: &str, version: Option<i32>, field: &str| -> Result<Pinned, Status> {
            let key = (name.to_string(), version);
            if !loaded.contains_key(&key) {
                let stored = qualify(namespace, name);
                let found = library.load(&stored, version).await.map_err(|e| match e {
                    LibraryError::NotFound { .. } | LibraryError::NoActive { .. } => {
                        Status::not_found(format!("{field}: {e}"))
                    }
                    other => Status::internal(other.to_string()),
                })?;
                if !found.contract.active {
                    return Err(super::invalid(
                        field,
                        format!(
                            "contract {name} version {} is deactivated; name an active version",
                            found.contract.version
                        ),
                    ));
                }
                loaded.insert(key.clone(), found);
            }
            let found = &loaded[&key];
            Ok(Pinned {
                name: found.contract.name.clone(),
                version: found.contract.version,
            })
        };
    if let Some((name, version)) = &input_contract {
        definition.input_contract =
            Some(load(name, *version, &format!("{at}.input_contract")).await?);
    }
    for (i, named) in named.iter().enumerate() {
        if let Some((name, version)) = named {
            let field = format!("{at}.steps[{i}].contract");
            definition.steps[i].contract = Some(load(name, *version, &field).await?);
        }
    }
    let by_pin: HashMap<(String, i32), &Loaded> = loaded
        .values()
        .map(|l| ((l.contract.name.clone(), l.contract.version), l))
        .collect();
    let schema_of = |pin: &Option<Pinned>, part: Part| -> Option<&Value> {
        let pin = pin.as_ref()?;
        by_pin.get(&(pin.name.clone(), pin.version))?.schema(part)
    };

    // The input against the chain's input contract.
    if let Some(pin) = &definition.input_contract
        && let Some(found) = by_pin.get(&(pin.name.clone(), pin.version))
        && let Some(validator) = library.compile(found, Part::Input)
    {
        let mut v = Violations::default();
        for violation in violations(&validator, &input, 20) {
            v.add(
                format!("{at}.input{}", violation.instance_path),
                format!(
                    "{} (contract {} version {}, input schema at {})",
                    violation.message, pin.name, pin.version, violation.schema_path
                ),
            );
        }
        v.into_result(())?;
    }

    let wires = if mode == proto::WiringCheck::Off {
        Vec::new()
    } else {
        let mut documents = Documents::default();
        for found in loaded.values() {
            documents.extend(found.documents.clone());
        }
        let mut inputs = BTreeMap::new();
        let mut outputs = BTreeMap::new();
        for step in &definition.steps {
            if let Some(schema) = schema_of(&step.contract, Part::Input) {
                inputs.insert(step.id.clone(), schema);
            }
            if let Some(schema) = schema_of(&step.contract, Part::Output) {
                outputs.insert(step.id.clone(), schema);
            }
        }
        let schemas = Schemas {
            input: schema_of(&definition.input_contract, Part::Input),
            inputs,
            outputs,
            order: definition.order(),
            registry: &documents,
        };
        check::wires(&definition, &schemas)
    };
    Ok(Checked {
        definition,
        input,
        tags,
        ttl_ms,
        idempotency_key: (!idempotency_key.is_empty()).then_some(idempotency_key),
        mode,
        at: at.to_string(),
        wires,
        order: graph.order,
    })
}

/// A contract named by a chain or a step: its name checked, version 0 as None
/// (the latest active one).
pub(super) fn pinned_name(
    named: Option<proto::ContractVersion>,
    field: &str,
    v: &mut Violations,
) -> Option<(String, Option<i32>)> {
    let named = named?;
    if !convert::valid_name(&named.name) {
        v.add(format!("{field}.name"), convert::NAME_RULE);
        return None;
    }
    let version = (named.version > 0).then_some(named.version as i32);
    Some((named.name, version))
}

/// One step's fields checked as a job's are, with each reference standing in
/// for a value: a reference may stand in the URL's path and query but not in
/// its scheme or host. A step naming a template takes its call, contract and
/// settings (its own settings, when set, win); `template` is that template. The
/// step's job is of `namespace`, in `chain_queue` unless it names its own.
pub(super) fn step_def(
    step: proto::ChainStep,
    path: &str,
    (namespace, chain_queue): (&str, &str),
    template: Option<&UsedTemplate>,
    limits: &Limits,
    v: &mut Violations,
) -> Option<StepDef> {
    let proto::ChainStep {
        id,
        depends_on: _,
        run_if: _,
        request,
        contract,
        timeout,
        max_attempts,
        backoff,
        queue,
        priority,
        template: named,
    } = step;
    if let (Some(used), Some(named)) = (template, named) {
        if request.is_some() {
            v.add(
                format!("{path}.request"),
                "a step names a template or a request, not both",
            );
        }
        if contract.is_some() {
            v.add(
                format!("{path}.contract"),
                "a template's step keeps the template's contract",
            );
        }
        let input = match named.input.as_ref().map(json_from_value) {
            None => Value::Null,
            Some(Some(input)) => input,
            Some(None) => {
                v.add(
                    format!("{path}.template.input"),
                    "must be JSON (numbers finite)",
                );
                Value::Null
            }
        };
        if let Err(e) = references_in(&input) {
            v.add(
                format!("{path}.template.input"),
                format!("malformed reference: {e}"),
            );
        }
        let own = &used.settings.job;
        let queue = match (queue.is_empty(), own.queue.is_empty()) {
            (false, _) => queue,
            (true, false) => own.queue.clone(),
            (true, true) => chain_queue.to_string(),
        };
        // The step's own settings, checked on a call that stands for the template's.
        let probe = proto::JobSpec {
            request: Some(proto::HttpRequest {
                url: "http://template.invalid/".into(),
                ..Default::default()
            }),
            timeout,
            priority,
            max_attempts,
            backoff,
            queue,
            ..Default::default()
        };
        let job = convert::new_job(
            namespace,
            Some(probe),
            path,
            limits,
            String::new(),
            None,
            0,
            v,
        )?;
        let (mine, unset) = (job.job, job.unset);
        let job = StepJob {
            queue: mine.queue,
            priority: if priority != 0 {
                priority
            } else {
                own.priority
            },
            timeout_ms: if unset.timeout {
                own.timeout_ms
            } else {
                mine.timeout_ms
            },
            max_attempts: if unset.max_attempts {
                own.max_attempts
            } else {
                mine.max_attempts
            },
            backoff_strategy: if unset.backoff {
                own.backoff_strategy.clone()
            } else {
                mine.backoff_strategy
            },
            backoff_base_ms: if unset.backoff {
                own.backoff_base_ms
            } else {
                mine.backoff_base_ms
            },
            backoff_max_ms: if unset.backoff {
                own.backoff_max_ms
            } else {
                mine.backoff_max_ms
            },
            unset_timeout: unset.timeout && own.unset_timeout,
            unset_max_attempts: unset.max_attempts && own.unset_max_attempts,
            unset_backoff: unset.backoff && own.unset_backoff,
        };
        return Some(StepDef {
            id,
            parents: Vec::new(),
            run_if: RunIfName::OnSuccess,
            call: used.call.clone(),
            contract: used.contract.clone(),
            job,
            template: Some(used.pinned.clone()),
            input: Some(input),
        });
    }
    let _ = contract;
    let Some(request) = request else {
        v.add(format!("{path}.request"), "required: the HTTP call to make");
        return None;
    };
    let before = v.len();
    let syntax = |field: &str, text: &str, v: &mut Violations| -> String {
        without_references(text).unwrap_or_else(|e| {
            v.add(
                format!("{path}.request.{field}"),
                format!("malformed reference: {e}"),
            );
            String::new()
        })
    };
    let probe_url = syntax("url", &request.url, v);
    refuse_secrets(&request, path, v);
    let mut probe_headers = std::collections::HashMap::new();
    for (name, value) in &request.headers {
        probe_headers.insert(
            name.clone(),
            syntax(&format!("headers[{name:?}]"), value, v),
        );
    }
    let mut probe_params = std::collections::HashMap::new();
    for (name, value) in &request.params {
        probe_params.insert(name.clone(), syntax(&format!("params[{name:?}]"), value, v));
    }
    let body = match &request.body {
        None => None,
        Some(proto::http_request::Body::Json(value)) => match json_from_value(value) {
            Some(json) => {
                if let Err(e) = references_in(&json) {
                    v.add(
                        format!("{path}.request.json"),
                        format!("malformed reference: {e}"),
                    );
                }
                Some(BodyTemplate::Json(json))
            }
            None => {
                v.add(
                    format!("{path}.request.json"),
                    "must be JSON (numbers finite)",
                );
                None
            }
        },
        Some(proto::http_request::Body::Text(text)) => {
            syntax("text", text, v);
            Some(BodyTemplate::Text(text.clone()))
        }
        Some(proto::http_request::Body::Raw(raw)) => Some(BodyTemplate::Raw(raw.clone())),
    };
    if v.len() > before {
        return None;
    }
    // The job's own checks, on the call with its references standing in.
    let probe = proto::JobSpec {
        request: Some(proto::HttpRequest {
            method: request.method.clone(),
            url: probe_url,
            headers: probe_headers,
            secret_headers: Vec::new(),
            params: probe_params,
            body: request.body.clone(),
        }),
        timeout,
        priority,
        max_attempts,
        backoff,
        schedule_time: None,
        ttl: None,
        tags: Vec::new(),
        idempotency_key: String::new(),
        queue: if queue.is_empty() {
            chain_queue.to_string()
        } else {
            queue
        },
        template: None,
        signing: None,
        follow_redirects: None,
    };
    let job = convert::new_job(
        namespace,
        Some(probe),
        path,
        limits,
        String::new(),
        None,
        0,
        v,
    )?;
    let (job, unset) = (job.job, job.unset);
    Some(StepDef {
        id,
        parents: Vec::new(),
        run_if: RunIfName::OnSuccess,
        call: CallTemplate {
            method: job.method,
            url: request.url,
            headers: request.headers.into_iter().collect(),
            params: request.params.into_iter().collect(),
            body,
        },
        contract: None,
        job: StepJob {
            queue: job.queue,
            priority: job.priority,
            timeout_ms: job.timeout_ms,
            max_attempts: job.max_attempts,
            backoff_strategy: job.backoff_strategy,
            backoff_base_ms: job.backoff_base_ms,
            backoff_max_ms: job.backoff_max_ms,
            unset_timeout: unset.timeout,
            unset_max_attempts: unset.max_attempts,
            unset_backoff: unset.backoff,
        },
        template: None,
        input: None,
    })
}

/// A step's or template's call is kept in the clear with its chain or template,
/// so it may not carry a secret header; a job made from a template adds its own
/// in its request, where they are sealed with the job.
fn refuse_secrets(request: &proto::HttpRequest, path: &str, v: &mut Violations) {
    let secret = request
        .headers
        .keys()
        .filter(|name| crate::secret::headers::always_secret(name))
        .chain(request.secret_headers.iter());
    for name in secret {
        v.add(
            format!("{path}.request.headers[{name:?}]"),
            "a secret header cannot be kept in a chain step's or a template's call; \
             a job made from a template may add it to its own request.headers, \
             where it is kept encrypted",
        );
    }
}
