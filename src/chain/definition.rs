//! A chain as it is stored: its steps as checked at submit (each dependency
//! written out, each contract's version pinned), and how a step's call is
//! rendered once the steps before it have ended.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::graph::{self, Graph, Node, RunIf};
use super::reference::{Context, Placement, RefError, pieces, render_json, render_str};

/// A chain's steps and the contract its input fits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Definition {
    pub steps: Vec<StepDef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_contract: Option<Pinned>,
}

/// What a schedule keeps to start a chain at each run: the input and the steps
/// as checked when the schedule was written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scheduled {
    pub input: Value,
    pub definition: Definition,
}

/// One version of a contract.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pinned {
    pub name: String,
    pub version: i32,
}

/// One step: when it runs, the call it makes (with references), and the job
/// settings its call runs with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepDef {
    pub id: String,
    /// Every step it waits for, written out.
    pub parents: Vec<String>,
    pub run_if: RunIfName,
    pub call: CallTemplate,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contract: Option<Pinned>,
    pub job: StepJob,
    /// A template's step: the template, pinned, and the input its call reads
    /// (with references to the chain); `call` is the template's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<Pinned>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<Value>,
}

impl StepDef {
    /// Where this step's references to the chain stand, by field: a template
    /// step's input, or an inline step's call.
    pub fn wired_fields(&self) -> Vec<(String, Value)> {
        match &self.input {
            Some(input) => vec![("template.input".into(), input.clone())],
            None => self
                .call
                .fields()
                .into_iter()
                .map(|(field, value)| (format!("request.{field}"), value))
                .collect(),
        }
    }
}

/// A template's settings as stored: its job's and its tags.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateSettings {
    pub job: StepJob,
    pub tags: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunIfName {
    OnSuccess,
    OnFailure,
    Always,
}

impl From<RunIfName> for RunIf {
    fn from(r: RunIfName) -> RunIf {
        match r {
            RunIfName::OnSuccess => RunIf::OnSuccess,
            RunIfName::OnFailure => RunIf::OnFailure,
            RunIfName::Always => RunIf::Always,
        }
    }
}

impl From<RunIf> for RunIfName {
    fn from(r: RunIf) -> RunIfName {
        match r {
            RunIf::OnSuccess => RunIfName::OnSuccess,
            RunIf::OnFailure => RunIfName::OnFailure,
            RunIf::Always => RunIfName::Always,
        }
    }
}

/// A call with references still in it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallTemplate {
    pub method: String,
    pub url: String,
    pub headers: BTreeMap<String, String>,
    pub params: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<BodyTemplate>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BodyTemplate {
    Json(Value),
    Text(String),
    Raw(Vec<u8>),
}

/// The settings of a step's job; those the client left unset take its queue's
/// defaults when the job is made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepJob {
    pub queue: String,
    pub priority: i32,
    pub timeout_ms: i64,
    pub max_attempts: i32,
    pub backoff_strategy: String,
    pub backoff_base_ms: i64,
    pub backoff_max_ms: i64,
    pub unset_timeout: bool,
    pub unset_max_attempts: bool,
    pub unset_backoff: bool,
}

/// A call with its references resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct RenderedCall {
    pub method: String,
    pub url: String,
    pub headers: BTreeMap<String, String>,
    pub params: BTreeMap<String, String>,
    pub body: Option<RenderedBody>,
}

impl RenderedCall {
    /// The call as a job makes it. The body goes as rendered: through
    /// `google.protobuf.Value` an integer would come back as a double.
    pub fn into_call(self) -> crate::job::call::Call {
        let (body_kind, body) = match self.body {
            None => (None, None),
            Some(RenderedBody::Json(json)) => (
                Some("json".to_string()),
                Some(serde_json::to_vec(&json).unwrap_or_default()),
            ),
            Some(RenderedBody::Text(text)) => (Some("text".to_string()), Some(text.into_bytes())),
            Some(RenderedBody::Raw(raw)) => (Some("raw".to_string()), Some(raw)),
        };
        crate::job::call::Call {
            method: self.method,
            url: self.url,
            headers: self.headers,
            secret_headers: Vec::new(),
            params: self.params,
            body_kind,
            body,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum RenderedBody {
    Json(Value),
    Text(String),
    Raw(Vec<u8>),
}

/// Which part of a call a reference failed in, for the step's reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderError {
    pub field: String,
    pub error: RefError,
}

impl std::fmt::Display for RenderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "request.{}: {}", self.field, self.error)
    }
}

impl CallTemplate {
    /// Resolves every reference against `ctx`.
    pub fn render(&self, ctx: &Context) -> Result<RenderedCall, RenderError> {
        let at = |field: String| move |error: RefError| RenderError { field, error };
        let url = render_str(&self.url, ctx, Placement::Url).map_err(at("url".into()))?;
        let mut headers = BTreeMap::new();
        for (name, value) in &self.headers {
            let text = render_str(value, ctx, Placement::Text)
                .map_err(at(format!("headers[{name:?}]")))?;
            headers.insert(name.clone(), text);
        }
        let mut params = BTreeMap::new();
        for (name, value) in &self.params {
            // Query values are percent-encoded when the URL is built.
            let text =
                render_str(value, ctx, Placement::Text).map_err(at(format!("params[{name:?}]")))?;
            params.insert(name.clone(), text);
        }
        let body = match &self.body {
            None => None,
            Some(BodyTemplate::Json(v)) => Some(RenderedBody::Json(
                render_json(v, ctx).map_err(at("body".into()))?,
            )),
            Some(BodyTemplate::Text(t)) => Some(RenderedBody::Text(
                render_str(t, ctx, Placement::Text).map_err(at("body".into()))?,
            )),
            Some(BodyTemplate::Raw(b)) => Some(RenderedBody::Raw(b.clone())),
        };
        Ok(RenderedCall {
            method: self.method.clone(),
            url,
            headers,
            params,
            body,
        })
    }

    /// The strings references may stand in, by field, with the JSON body as a
    /// value: what the submit-time checks walk.
    pub fn fields(&self) -> Vec<(String, Value)> {
        let mut fields = vec![("url".to_string(), Value::String(self.url.clone()))];
        for (name, value) in &self.headers {
            fields.push((format!("headers[{name:?}]"), Value::String(value.clone())));
        }
        for (name, value) in &self.params {
            fields.push((format!("params[{name:?}]"), Value::String(value.clone())));
        }
        match &self.body {
            Some(BodyTemplate::Json(v)) => fields.push(("body".into(), v.clone())),
            Some(BodyTemplate::Text(t)) => fields.push(("body".into(), Value::String(t.clone()))),
            Some(BodyTemplate::Raw(_)) | None => {}
        }
        fields
    }
}

/// `text` with each reference replaced by `0`: what the static checks of a URL
/// or header see (a URL's scheme and host must be written out).
pub fn without_references(text: &str) -> Result<String, RefError> {
    use super::reference::Piece;
    Ok(pieces(text)?
        .into_iter()
        .map(|piece| match piece {
            Piece::Text(t) => t,
            Piece::Ref(_) => "0".to_string(),
        })
        .collect())
}

impl Definition {
    /// The steps as a graph; a stored definition was checked at submit.
    pub fn graph(&self) -> Result<Graph, Vec<graph::GraphError>> {
        let nodes: Vec<Node> = self
            .steps
            .iter()
            .map(|s| Node {
                id: s.id.clone(),
                depends_on: Some(s.parents.clone()),
                run_if: s.run_if.into(),
            })
            .collect();
        graph::build(&nodes)
    }

    pub fn step(&self, id: &str) -> Option<&StepDef> {
        self.steps.iter().find(|s| s.id == id)
    }

    /// Step ids in the order submitted, for `tasks[N]`.
    pub fn order(&self) -> Vec<String> {
        self.steps.iter().map(|s| s.id.clone()).collect()
    }
}
