//! `TemplateService`, and templates in use: a template version read and pinned,
//! its input checked against its contract, and a job's spec made from it.

use std::collections::HashMap;

use serde_json::Value;
use tonic::{Request, Response, Status};

use super::chain_spec::{self, pinned_name};
use super::convert::{self, Limits, duration, json_from_value, timestamp, value_from_json};
use super::{Violations, invalid, versions};
use crate::auth::Caller;
use crate::chain::check::{self, Schemas};
use crate::chain::definition::{
    CallTemplate, Definition, Pinned, RenderedBody, RunIfName, StepDef, TemplateSettings,
};
use crate::chain::reference::{Context, Source, references_in};
use crate::contract::compat::Verdict;
use crate::contract::library::{self, Library, LibraryError};
use crate::contract::registry::Part;
use crate::engine::{Engine, TemplateChange};
use crate::namespace::{local, qualify};
use crate::proto::{self, template_service_server::TemplateService};
use crate::secret::headers::always_secret;
use crate::store::{Store, templates};

const PAGE_TOKEN_PREFIX: &str = "templates-after:";
const MAX_DESCRIPTION_BYTES: usize = 4096;

/// A template version, read for use.
#[derive(Clone)]
pub struct UsedTemplate {
    pub pinned: Pinned,
    pub call: CallTemplate,
    pub settings: TemplateSettings,
    pub contract: Option<Pinned>,
}

/// The template a job or step of `namespace` names: NOT_FOUND when there is
/// none, refused when the version named is deactivated.
pub async fn used(
    store: &Store,
    namespace: &str,
    named: &proto::TemplateCall,
    field: &str,
) -> Result<UsedTemplate, Status> {
    if !convert::valid_name(&named.name) {
        return Err(invalid(format!("{field}.name"), convert::NAME_RULE));
    }
    let found = match named.version {
        0 => store.latest_active_template(namespace, &named.name).await?,
        v => {
            store
                .template(namespace, &named.name, Some(v as i32))
                .await?
        }
    };
    let Some(found) = found else {
        return Err(Status::not_found(match named.version {
            0 => format!("{field}: template {} has no active version", named.name),
            v => format!("{field}: template {} version {v} not found", named.name),
        }));
    };
    if !found.active {
        return Err(invalid(
            field,
            format!(
                "template {} version {} is deactivated; name an active version",
                named.name, found.version
            ),
        ));
    }
    let stored = |e: serde_json::Error| Status::internal(format!("stored template: {e}"));
    Ok(UsedTemplate {
        pinned: Pinned {
            name: found.name.clone(),
            version: found.version,
        },
        call: serde_json::from_str(&found.call).map_err(stored)?,
        settings: serde_json::from_str(&found.job).map_err(stored)?,
        contract: found
            .contract
            .as_deref()
            .and_then(library::parse_label)
            .map(|(name, version)| Pinned {
                name: name.into(),
                version,
            }),
    })
}

/// Checks a value against one part of a pinned contract; the violations as
/// `field` plus the instance path.
pub async fn check_against(
    library: &Library,
    pinned: &Pinned,
    part: Part,
    value: &Value,
    field: &str,
) -> Result<(), Status> {
    let found = library
        .check(&pinned.name, pinned.version, part, value, 20)
        .await
        .map_err(|e| match e {
            LibraryError::NotFound { .. } => Status::not_found(format!("{field}: {e}")),
            other => Status::internal(other.to_string()),
        })?;
    let mut v = Violations::default();
    for violation in found {
        v.add(
            format!("{field}{}", violation.instance_path),
            format!(
                "{} (contract {} version {}, schema at {})",
                violation.message,
                local(&pinned.name),
                pinned.version,
                violation.schema_path
            ),
        );
    }
    v.into_result(())
}

/// A job's spec made from the template it names (when it names one): the
/// template's call rendered with its input, the job's headers and params merged
/// over the template's, its tags added, its other fields (when set) over the
/// template's. Also the contract the job keeps, as `name/version`.
pub async fn expand(
    namespace: &str,
    spec: proto::JobSpec,
    path: &str,
    store: &Store,
    library: &Library,
    cache: &mut HashMap<(String, u32), UsedTemplate>,
) -> Result<(proto::JobSpec, Option<String>), Status> {
    let Some(named) = spec.template.clone() else {
        return Ok((spec, None));
    };
    let field = format!("{path}.template");
    let key = (named.name.clone(), named.version);
    let template = match cache.get(&key) {
        Some(t) => t.clone(),
        None => {
            let t = used(store, namespace, &named, &field).await?;
            cache.insert(key, t.clone());
            t
        }
    };
    let input = named
        .input
        .as_ref()
        .map(|v| {
            json_from_value(v).ok_or_else(|| invalid(format!("{field}.input"), "must be JSON"))
        })
        .transpose()?
        .unwrap_or(Value::Null);
    if let Some(contract) = &template.contract {
        check_against(
            library,
            contract,
            Part::Input,
            &input,
            &format!("{field}.input"),
        )
        .await?;
    }
    let ctx = Context {
        input: input.into(),
        ..Default::default()
    };
    let rendered = template
        .call
        .render(&ctx)
        .map_err(|e| invalid(format!("{field}.input"), format!("the template's {e}")))?;
    let overrides = spec.request.clone().unwrap_or_default();
    if !overrides.url.is_empty() || !overrides.method.is_empty() || overrides.body.is_some() {
        return Err(invalid(
            format!("{path}.request"),
            "with a template, the request may only add headers and params",
        ));
    }
    let mut headers: HashMap<String, String> = rendered.headers.into_iter().collect();
    for (name, value) in overrides.headers {
        headers.retain(|k, _| !k.eq_ignore_ascii_case(&name));
        headers.insert(name, value);
    }
    let mut params: HashMap<String, String> = rendered.params.into_iter().collect();
    params.extend(overrides.params);
    let body = rendered.body.map(|b| match b {
        RenderedBody::Json(json) => proto::http_request::Body::Json(value_from_json(json)),
        RenderedBody::Text(text) => proto::http_request::Body::Text(text),
        RenderedBody::Raw(raw) => proto::http_request::Body::Raw(raw),
    });
    let job = &template.settings.job;
    let mut tags = template.settings.tags.clone();
    tags.extend(spec.tags.iter().cloned());
    let expanded = proto::JobSpec {
        request: Some(proto::HttpRequest {
            method: rendered.method,
            url: rendered.url,
            headers,
            // Only the job's own headers can be secret: a template's call holds none.
            secret_headers: overrides.secret_headers,
            params,
            body,
        }),
        timeout: spec
            .timeout
            .or_else(|| (!job.unset_timeout).then(|| duration(job.timeout_ms))),
        priority: if spec.priority != 0 {
            spec.priority
        } else {
            job.priority
        },
        max_attempts: spec
            .max_attempts
            .or_else(|| (!job.unset_max_attempts).then_some(job.max_attempts)),
        backoff: spec.backoff.or_else(|| {
            (!job.unset_backoff).then(|| proto::Backoff {
                strategy: convert::backoff_strategy_of(&job.backoff_strategy) as i32,
                base_delay: Some(duration(job.backoff_base_ms)),
                max_delay: Some(duration(job.backoff_max_ms)),
            })
        }),
        schedule_time: spec.schedule_time,
        ttl: spec.ttl,
        tags,
        idempotency_key: spec.idempotency_key,
        queue: if spec.queue.is_empty() {
            job.queue.clone()
        } else {
            spec.queue
        },
        template: None,
        signing: spec.signing,
        follow_redirects: spec.follow_redirects,
    };
    let contract = template
        .contract
        .as_ref()
        .map(|c| library::label(&c.name, c.version));
    Ok((expanded, contract))
}

fn template_proto(t: templates::Model) -> proto::Template {
    let call: Option<CallTemplate> = serde_json::from_str(&t.call).ok();
    let settings: Option<TemplateSettings> = serde_json::from_str(&t.job).ok();
    let job = settings.as_ref().map(|s| &s.job);
    proto::Template {
        name: local(&t.name).to_string(),
        version: t.version as u32,
        description: t.description,
        request: call.map(|c| proto::HttpRequest {
            method: c.method,
            url: c.url,
            // A template from before secret headers were refused in one shows
            // their names only.
            secret_headers: c
                .headers
                .keys()
                .filter(|name| always_secret(name))
                .cloned()
                .collect(),
            headers: c
                .headers
                .into_iter()
                .filter(|(name, _)| !always_secret(name))
                .collect(),
            params: c.params.into_iter().collect(),
            body: c.body.map(|b| match b {
                crate::chain::definition::BodyTemplate::Json(json) => {
                    proto::http_request::Body::Json(value_from_json(json))
                }
                crate::chain::definition::BodyTemplate::Text(text) => {
                    proto::http_request::Body::Text(text)
                }
                crate::chain::definition::BodyTemplate::Raw(raw) => {
                    proto::http_request::Body::Raw(raw)
                }
            }),
        }),
        timeout: job
            .filter(|j| !j.unset_timeout)
            .map(|j| duration(j.timeout_ms)),
        max_attempts: job
            .filter(|j| !j.unset_max_attempts)
            .map(|j| j.max_attempts),
        backoff: job.filter(|j| !j.unset_backoff).map(|j| proto::Backoff {
            strategy: convert::backoff_strategy_of(&j.backoff_strategy) as i32,
            base_delay: Some(duration(j.backoff_base_ms)),
            max_delay: Some(duration(j.backoff_max_ms)),
        }),
        queue: job.map(|j| j.queue.clone()).unwrap_or_default(),
        tags: settings.map(|s| s.tags).unwrap_or_default(),
        contract: t
            .contract
            .as_deref()
            .and_then(library::parse_label)
            .map(|(name, version)| proto::ContractVersion {
                name: local(name).into(),
                version: version as u32,
            }),
        active: t.active,
        create_time: Some(timestamp(t.created_at)),
        deactivate_time: t.deactivated_at.map(timestamp),
    }
}

pub struct TemplateApi {
    engine: Engine,
    limits: Limits,
}

impl TemplateApi {
    pub fn new(engine: Engine, limits: Limits) -> Self {
        TemplateApi { engine, limits }
    }
}

#[tonic::async_trait]
impl TemplateService for TemplateApi {
    async fn create_template(
        &self,
        request: Request<proto::CreateTemplateRequest>,
    ) -> Result<Response<proto::Template>, Status> {
        let namespace = Caller::namespace_of(&request);
        let proto::CreateTemplateRequest { template } = request.into_inner();
        let Some(template) = template else {
            return Err(invalid("template", "required"));
        };
        let proto::Template {
            name,
            version,
            description,
            request,
            timeout,
            max_attempts,
            backoff,
            queue,
            tags,
            contract,
            active: _,
            create_time: _,
            deactivate_time: _,
        } = template;
        let mut v = Violations::default();
        if !convert::valid_name(&name) {
            v.add("template.name", convert::NAME_RULE);
        }
        if version != 0 {
            v.add("template.version", "must be unset: versions are assigned");
        }
        if description.len() > MAX_DESCRIPTION_BYTES {
            v.add(
                "template.description",
                format!("at most {MAX_DESCRIPTION_BYTES} bytes"),
            );
        }
        let tags = convert::checked_tags(tags, "template", &mut v);
        let named = pinned_name(contract, "template.contract", &mut v);
        let step = proto::ChainStep {
            id: "template".into(),
            request,
            timeout,
            max_attempts,
            backoff,
            queue,
            ..Default::default()
        };
        let at = (namespace.as_str(), "");
        let def = chain_spec::step_def(step, "template", at, None, &self.limits, &mut v);
        v.into_result(())?;
        let mut def = def.ok_or_else(|| Status::internal("template not built"))?;
        // A template's queue is named as its namespace knows it: a job or step made
        // from it is checked and stored as its own.
        def.job.queue = local(&def.job.queue).to_string();
        // A template's references read its input, nothing else.
        let mut v = Violations::default();
        for (field, value) in def.wired_fields() {
            for reference in references_in(&value).unwrap_or_default() {
                if reference.source != Source::Input {
                    v.add(
                        format!("template.{field}"),
                        format!("{{{{ {reference} }}}}: a template's references read its input ({{{{ input... }}}})"),
                    );
                }
            }
        }
        v.into_result(())?;
        // Each reference against what the contract's input schema guarantees.
        let library = self.engine.library();
        let pinned = match named {
            Some((name, version)) => {
                let stored = qualify(&namespace, &name);
                let loaded = library.load(&stored, version).await.map_err(|e| match e {
                    LibraryError::NotFound { .. } | LibraryError::NoActive { .. } => {
                        Status::not_found(format!("template.contract: {e}"))
                    }
                    other => Status::internal(other.to_string()),
                })?;
                if !loaded.contract.active {
                    return Err(invalid(
                        "template.contract",
                        format!(
                            "contract {name} version {} is deactivated",
                            loaded.contract.version
                        ),
                    ));
                }
                let definition = Definition {
                    steps: vec![StepDef {
                        run_if: RunIfName::OnSuccess,
                        ..def.clone()
                    }],
                    input_contract: None,
                };
                let schemas = Schemas {
                    input: loaded.schema(Part::Input),
                    inputs: Default::default(),
                    outputs: Default::default(),
                    order: definition.order(),
                    registry: &loaded.documents,
                };
                let mut v = Violations::default();
                for w in check::wires(&definition, &schemas) {
                    if w.wire.verdict != Verdict::No {
                        continue;
                    }
                    for f in &w.wire.findings {
                        v.add(
                            format!(
                                "template.{}{}",
                                w.field,
                                if w.wire.at == "/" { "" } else { &w.wire.at }
                            ),
                            format!(
                                "{{{{ {} }}}}: expected {}, found {} (input schema at {})",
                                w.wire.reference, f.expected, f.found, f.producer
                            ),
                        );
                    }
                }
                v.into_result(())?;
                Some(library::label(
                    &loaded.contract.name,
                    loaded.contract.version,
                ))
            }
            None => None,
        };
        let store = self.engine.store();
        let latest = store.template(&namespace, &name, None).await?;
        let row = templates::Model {
            name: qualify(&namespace, &name),
            version: 0,
            namespace,
            description,
            call: serde_json::to_string(&def.call).map_err(|e| Status::internal(e.to_string()))?,
            job: serde_json::to_string(&TemplateSettings { job: def.job, tags })
                .map_err(|e| Status::internal(e.to_string()))?,
            contract: pinned,
            active: true,
            created_at: 0,
            deactivated_at: None,
        };
        let created = self
            .engine
            .change_template(TemplateChange::Create {
                template: Box::new(row),
                after: latest.map(|t| t.version),
            })
            .await?;
        Ok(Response::new(template_proto(created)))
    }

    async fn get_template(
        &self,
        request: Request<proto::GetTemplateRequest>,
    ) -> Result<Response<proto::Template>, Status> {
        let namespace = Caller::namespace_of(&request);
        let proto::GetTemplateRequest { name, version } = request.into_inner();
        let version = versions::version_asked(&name, version)?;
        match self
            .engine
            .store()
            .template(&namespace, &name, version)
            .await?
        {
            Some(found) => Ok(Response::new(template_proto(found))),
            None => Err(versions::not_found("template", &name, version)),
        }
    }

    async fn list_templates(
        &self,
        request: Request<proto::ListTemplatesRequest>,
    ) -> Result<Response<proto::ListTemplatesResponse>, Status> {
        let namespace = Caller::namespace_of(&request);
        let proto::ListTemplatesRequest {
            name,
            page_size,
            page_token,
        } = request.into_inner();
        let asked = versions::page_asked(
            name,
            page_size,
            &page_token,
            PAGE_TOKEN_PREFIX,
            "ListTemplates",
        )?;
        let mut page = self
            .engine
            .store()
            .list_templates(
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
        Ok(Response::new(proto::ListTemplatesResponse {
            templates: page.into_iter().map(template_proto).collect(),
            next_page_token,
        }))
    }

    async fn deactivate_template(
        &self,
        request: Request<proto::DeactivateTemplateRequest>,
    ) -> Result<Response<proto::Template>, Status> {
        let namespace = Caller::namespace_of(&request);
        let proto::DeactivateTemplateRequest { name, version } = request.into_inner();
        let version = versions::deactivation_asked(&name, version)?;
        let name = qualify(&namespace, &name);
        let deactivated = self
            .engine
            .change_template(TemplateChange::Deactivate { name, version })
            .await?;
        Ok(Response::new(template_proto(deactivated)))
    }
}
