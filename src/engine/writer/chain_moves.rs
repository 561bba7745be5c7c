//! Chains moving on, in the writer's transaction: before each claim, every chain
//! one of whose steps ended is moved on: the step's outcome recorded, the steps
//! it unblocks rendered and started as jobs (or skipped, or failed when a
//! reference finds nothing or the input breaks the step's contract), and the
//! chain ended when all its steps have. All of it commits with the outcome that
//! caused it, so a kill -9 neither loses progress nor makes it twice.

use std::collections::BTreeSet;

use serde_json::Value;

use super::*;
use crate::chain::definition::{Definition, StepDef};
use crate::chain::graph::{Graph, State};
use crate::chain::reference::{Context, Output};
use crate::contract::library;
use crate::contract::registry::Part;
use crate::job::ErrorClass;
use crate::store::{attempts, chain_steps, chains as chain_rows};

/// Most violations a step's failure lists.
const VIOLATIONS_REPORTED: usize = 10;

/// What the open transaction does to chains, gathered as it goes and applied
/// before its claim.
#[derive(Default)]
pub(super) struct Moves {
    /// Steps whose job reached an end.
    ended: Vec<StepEnded>,
    /// What ended step jobs left: the output of one that succeeded, the message
    /// of one that failed, by job id.
    left: HashMap<String, Left>,
    /// Chains to move though none of their steps ended (new, run again).
    chains: BTreeSet<String>,
    /// Jobs that ended in bulk, with no chain at hand (rescued for good, purged
    /// with their queue), to look up.
    unknown: Vec<(String, Status)>,
}

impl Moves {
    /// A chain to move this turn though none of its steps ended.
    pub(super) fn add(&mut self, chain_id: &str) {
        self.chains.insert(chain_id.to_string());
    }

    pub(super) fn clear(&mut self) {
        *self = Moves::default();
    }

    fn is_empty(&self) -> bool {
        self.ended.is_empty() && self.chains.is_empty() && self.unknown.is_empty()
    }
}

struct StepEnded {
    chain_id: String,
    step_id: String,
    job_id: String,
    status: Status,
    status_code: Option<i32>,
    error_class: Option<String>,
}

/// What an ended step's job left for its chain: the response of its last
/// attempt (`{status, headers, body}` as stored; a failure step reads a failed
/// one's), and why that attempt failed, in words.
#[derive(Default)]
pub(super) struct Left {
    /// As stored, and as references read it.
    output: Option<(String, Arc<Output>)>,
    message: Option<String>,
}

/// A step's output as stored: `{status, headers, body}`, header names in lower
/// case.
#[derive(serde::Serialize, serde::Deserialize)]
struct StoredOutput {
    status: u16,
    headers: BTreeMap<String, String>,
    body: Value,
}

/// What references read of a step's response, and how it is stored.
fn output_of(record: &attempts::Model) -> (String, Arc<Output>) {
    let headers = record
        .headers
        .as_deref()
        .and_then(|h| serde_json::from_str::<BTreeMap<String, Value>>(h).ok())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(k, v)| Some((k.to_ascii_lowercase(), v.as_str()?.to_string())))
        .collect();
    let body = match record.body.as_deref() {
        None | Some([]) => Value::Null,
        Some(bytes) => serde_json::from_slice(bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned())),
    };
    let stored = StoredOutput {
        status: record.status_code.unwrap_or(0) as u16,
        headers,
        body,
    };
    let text = serde_json::to_string(&stored).unwrap_or_else(|_| "null".into());
    (text, Arc::new(stored.into()))
}

impl From<StoredOutput> for Output {
    fn from(stored: StoredOutput) -> Output {
        Output {
            status: stored.status,
            headers: stored.headers,
            body: stored.body,
        }
    }
}

/// A stored output read back; `None` when it does not parse.
fn stored_output(text: &str) -> Option<Arc<Output>> {
    let stored: Value = serde_json::from_str(text).ok()?;
    // Outputs stored before names were lower-cased read the same way.
    let headers = stored["headers"]
        .as_object()
        .map(|h| {
            h.iter()
                .filter_map(|(k, v)| Some((k.to_ascii_lowercase(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default();
    Some(Arc::new(Output {
        status: stored["status"].as_u64().unwrap_or(0) as u16,
        headers,
        body: stored.get("body").cloned().unwrap_or(Value::Null),
    }))
}

/// Most chains whose parsed steps, and most step outputs, are kept between
/// turns; past it they are all dropped and read again as they are needed.
const SHAPES_KEPT: usize = 10_000;
const OUTPUTS_KEPT: usize = 50_000;

/// What is fixed of a chain at submit, parsed: its steps and their graph, its
/// input, and what its steps' jobs carry. A parse is good for the chain's life.
pub(super) struct Shape {
    definition: Definition,
    graph: Graph,
    order: Arc<[String]>,
    input: Arc<Value>,
    tags: String,
    ttl_ms: i64,
    trace_context: Option<String>,
}

/// What moves read again and again, kept across turns: chains' shapes by chain
/// id, and the outputs of ended steps by their job's id (an output never
/// changes once its job ended; a retried step runs as a new job).
#[derive(Default)]
pub(super) struct Kept {
    shapes: HashMap<String, Arc<Shape>>,
    outputs: HashMap<String, Arc<Output>>,
}

impl Kept {
    fn shape(&self, id: &str) -> Option<Arc<Shape>> {
        self.shapes.get(id).cloned()
    }

    /// Parses and keeps a chain's shape; logs a row that does not read back.
    fn parse(&mut self, row: &chain_rows::Model) {
        let definition = match serde_json::from_str::<Definition>(&row.definition) {
            Ok(d) => d,
            Err(error) => {
                tracing::error!(chain = %row.id, %error, "a stored chain does not read back; it is not moved");
                return;
            }
        };
        if !self.keep_new(row, definition) {
            tracing::error!(chain = %row.id, "a stored chain's steps do not form a graph; it is not moved");
        }
    }

    /// Keeps the shape of a chain just submitted, from what the submit parsed;
    /// false when its steps do not form a graph.
    pub(super) fn keep_new(&mut self, row: &chain_rows::Model, definition: Definition) -> bool {
        let Ok(graph) = definition.graph() else {
            return false;
        };
        if self.shapes.len() >= SHAPES_KEPT {
            self.shapes.clear();
        }
        let shape = Shape {
            order: definition.order().into(),
            definition,
            graph,
            input: Arc::new(serde_json::from_str(&row.input).unwrap_or(Value::Null)),
            tags: row.tags.clone(),
            ttl_ms: row.ttl_ms,
            trace_context: row.trace_context.clone(),
        };
        self.shapes.insert(row.id.clone(), Arc::new(shape));
        true
    }

    fn keep_output(&mut self, job_id: &str, output: Arc<Output>) {
        if self.outputs.len() >= OUTPUTS_KEPT {
            self.outputs.clear();
        }
        self.outputs.insert(job_id.to_string(), output);
    }

    /// Forgets an ended chain (a retry reads it again).
    fn forget(&mut self, chain: &Moving) {
        self.shapes.remove(&chain.head.id);
        for step in chain.steps.values() {
            if let Some(job_id) = &step.job_id {
                self.outputs.remove(job_id);
            }
        }
    }
}

/// A chain moved in this transaction, with its steps (read without their
/// outputs) and the outputs references may read.
struct Moving {
    head: write::ChainHead,
    shape: Arc<Shape>,
    steps: BTreeMap<String, chain_steps::Model>,
    outputs: BTreeMap<String, Arc<Output>>,
    changed_steps: BTreeSet<String>,
    ended: bool,
}

impl Moving {
    fn state(&self, id: &str) -> State {
        match self.steps.get(id).map(|s| s.status.as_str()) {
            Some("started") => State::Running,
            Some("succeeded") => State::Succeeded,
            Some("failed" | "canceled") => State::Failed,
            Some("skipped") => State::Skipped,
            _ => State::Waiting,
        }
    }

    fn states(&self) -> BTreeMap<String, State> {
        self.steps
            .keys()
            .map(|id| (id.clone(), self.state(id)))
            .collect()
    }

    fn step_mut(&mut self, id: &str) -> Option<&mut chain_steps::Model> {
        self.changed_steps.insert(id.to_string());
        self.steps.get_mut(id)
    }

    /// What references read: the input, every step that succeeded, and every
    /// step that failed with a response (what a failure step reads).
    fn context(&self) -> Context {
        let steps = self
            .outputs
            .iter()
            .filter(|(id, _)| {
                self.steps
                    .get(*id)
                    .is_some_and(|s| matches!(s.status.as_str(), "succeeded" | "failed"))
            })
            .map(|(id, output)| (id.clone(), output.clone()))
            .collect();
        Context {
            input: self.shape.input.clone(),
            steps,
            order: self.shape.order.clone(),
        }
    }

    /// Why a step is skipped, from its parents' ends.
    fn skip_reason(&self, id: &str) -> String {
        let parents = self
            .shape
            .graph
            .parents
            .get(id)
            .cloned()
            .unwrap_or_default();
        let ends: Vec<String> = parents
            .iter()
            .map(|p| {
                let status = self.steps.get(p).map_or("unknown", |s| s.status.as_str());
                format!("{p} {status}")
            })
            .collect();
        match self.shape.graph.run_if.get(id) {
            Some(crate::chain::graph::RunIf::OnFailure) => format!(
                "runs only when a step it depends on fails, and none did ({})",
                ends.join(", ")
            ),
            _ => format!(
                "runs only when every step it depends on succeeds ({})",
                ends.join(", ")
            ),
        }
    }

    /// Ends the chain when every step has ended.
    fn finish_if_done(&mut self) {
        if self.head.status != "running" {
            return;
        }
        let states = self.states();
        if !states
            .values()
            .all(|s| !matches!(s, State::Waiting | State::Running))
        {
            return;
        }
        let failed = self.steps.values().any(|s| s.status == "failed");
        let canceled = self.steps.values().any(|s| s.status == "canceled");
        self.head.status = match (failed, canceled) {
            (true, _) => "failed",
            (false, true) => "canceled",
            (false, false) => "succeeded",
        }
        .into();
        self.ended = true;
    }
}

impl Writer {
    /// Notes a chain step's job that reached an end, for its chain to move on.
    pub(super) fn note_step_end(
        &mut self,
        job: &jobs::Model,
        status: Status,
        status_code: Option<i32>,
        error_class: Option<String>,
    ) {
        if let (Some(chain_id), Some(step_id)) = (&job.chain_id, &job.step_id) {
            self.chain_moves.ended.push(StepEnded {
                chain_id: chain_id.clone(),
                step_id: step_id.clone(),
                job_id: job.id.clone(),
                status,
                status_code,
                error_class,
            });
        }
    }

    /// Keeps what an ended step's job left, from its last attempt.
    pub(super) fn note_step_left(
        &mut self,
        job: &jobs::Model,
        next: Next,
        record: &attempts::Model,
    ) {
        if job.chain_id.is_none() {
            return;
        }
        let output = record.status_code.map(|_| output_of(record));
        let left = match next {
            Next::Succeeded => Left {
                output,
                message: None,
            },
            Next::Failed => Left {
                output,
                message: Some(match (&record.error_message, record.status_code) {
                    (Some(message), _) => message.clone(),
                    (None, Some(code)) => format!("its call answered status {code}"),
                    (None, None) => "its call failed".into(),
                }),
            },
            _ => return,
        };
        self.chain_moves.left.insert(job.id.clone(), left);
    }

    /// Notes jobs that ended in bulk statements (a lease ran out for good, a
    /// queue was purged): their chains, if any, are looked up.
    pub(super) fn note_ended_in_bulk(&mut self, events: &[Event]) {
        for e in events.iter().filter(|e| e.status.is_terminal()) {
            self.chain_moves.unknown.push((e.job_id.clone(), e.status));
        }
    }

    /// Moves every chain the open transaction touched: see the module's comment.
    pub(super) async fn move_chains(
        &mut self,
        txn: &DatabaseTransaction,
        now: i64,
    ) -> Result<(), StoreError> {
        if self.chain_moves.is_empty() {
            return Ok(());
        }
        let mut moves = std::mem::take(&mut self.chain_moves);
        if !moves.unknown.is_empty() {
            let statuses: HashMap<&str, Status> = moves
                .unknown
                .iter()
                .map(|(id, status)| (id.as_str(), *status))
                .collect();
            let ids: Vec<&str> = statuses.keys().copied().collect();
            for step in write::steps_of_jobs(txn, &ids).await? {
                let Some(job_id) = step.job_id.filter(|_| step.status == "started") else {
                    continue;
                };
                let status = statuses
                    .get(job_id.as_str())
                    .copied()
                    .unwrap_or(Status::Failed);
                moves.ended.push(StepEnded {
                    chain_id: step.chain_id,
                    step_id: step.step_id,
                    job_id,
                    status,
                    status_code: None,
                    error_class: (status == Status::Failed)
                        .then(|| ErrorClass::Interrupted.as_str().into()),
                });
            }
        }
        let mut ids = moves.chains.clone();
        ids.extend(moves.ended.iter().map(|e| e.chain_id.clone()));
        let id_refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        let heads = write::lock_chain_heads(txn, &id_refs).await?;
        let unparsed: Vec<&str> = heads
            .iter()
            .filter(|h| self.chains_kept.shape(&h.id).is_none())
            .map(|h| h.id.as_str())
            .collect();
        if !unparsed.is_empty() {
            for row in write::chains_by_id(txn, &unparsed).await? {
                self.chains_kept.parse(&row);
            }
        }
        let mut steps_by_chain: HashMap<String, BTreeMap<String, chain_steps::Model>> =
            HashMap::new();
        for step in write::step_states(txn, &id_refs).await? {
            steps_by_chain
                .entry(step.chain_id.clone())
                .or_default()
                .insert(step.step_id.clone(), step);
        }
        let mut chains = Vec::with_capacity(heads.len());
        let mut at: HashMap<String, usize> = HashMap::with_capacity(heads.len());
        for head in heads {
            let Some(shape) = self.chains_kept.shape(&head.id) else {
                continue;
            };
            let steps = steps_by_chain.remove(&head.id).unwrap_or_default();
            at.insert(head.id.clone(), chains.len());
            chains.push(Moving {
                head,
                shape,
                steps,
                outputs: BTreeMap::new(),
                changed_steps: BTreeSet::new(),
                ended: false,
            });
        }
        // Outcomes first: only the job a step started may end it.
        for end in moves.ended {
            let Some(chain) = at.get(&end.chain_id).map(|i| &mut chains[*i]) else {
                continue;
            };
            let Some(step) = chain.step_mut(&end.step_id) else {
                continue;
            };
            if step.status != "started" || step.job_id.as_deref() != Some(&end.job_id) {
                continue;
            }
            let left = moves.left.remove(&end.job_id).unwrap_or_default();
            step.finished_at = Some(now);
            if let Some((text, output)) = left.output {
                step.output = Some(text);
                self.chains_kept.keep_output(&end.job_id, output);
            }
            match end.status {
                Status::Succeeded => {
                    step.status = "succeeded".into();
                }
                Status::Canceled => {
                    step.status = "canceled".into();
                    step.reason = Some("its job was canceled".into());
                }
                _ => {
                    step.status = "failed".into();
                    step.error_class = end.error_class.clone();
                    step.reason = Some(match left.message {
                        Some(message) => message,
                        None => match (end.status_code, &end.error_class) {
                            (Some(code), _) => format!("its call answered status {code}"),
                            (None, Some(class)) => format!("its call failed: {class}"),
                            (None, None) => "its call failed".into(),
                        },
                    });
                }
            }
        }
        self.outputs_of(txn, &mut chains).await?;
        // Queues of every step that may start, read once.
        let names: Vec<String> = chains
            .iter()
            .filter(|c| c.head.status == "running")
            .flat_map(|c| c.shape.definition.steps.iter().map(|s| s.job.queue.clone()))
            .collect();
        let queues = self
            .queues_for(txn, now, names.iter().map(String::as_str).collect())
            .await?;
        let mut inserts = Vec::new();
        for chain in &mut chains {
            if chain.head.status == "running" {
                self.release(chain, now, &queues, &mut inserts).await;
                chain.finish_if_done();
            }
        }
        let mut steps = Vec::new();
        let mut ends = Vec::new();
        for mut chain in chains {
            if chain.ended {
                self.chains_kept.forget(&chain);
                ends.push(write::ChainEnd {
                    id: chain.head.id.clone(),
                    status: chain.head.status.clone(),
                    at: now,
                    expires_at: now + chain.shape.ttl_ms,
                });
            }
            for id in std::mem::take(&mut chain.changed_steps) {
                if let Some(step) = chain.steps.remove(&id) {
                    steps.push(step);
                }
            }
        }
        write::write_steps(txn, steps).await?;
        write::end_chains(txn, &ends).await?;
        if !inserts.is_empty() {
            write::insert_jobs(txn, inserts).await?;
        }
        Ok(())
    }

    /// Gives each chain the outputs of its ended steps: kept ones, and the others
    /// read (after a restart, or when another process ran the step).
    async fn outputs_of(
        &mut self,
        txn: &DatabaseTransaction,
        chains: &mut [Moving],
    ) -> Result<(), StoreError> {
        let mut unread = Vec::new();
        for chain in chains.iter_mut() {
            for (id, step) in &chain.steps {
                let Some(job_id) = step
                    .job_id
                    .as_ref()
                    .filter(|_| matches!(step.status.as_str(), "succeeded" | "failed"))
                else {
                    continue;
                };
                match self.chains_kept.outputs.get(job_id) {
                    Some(output) => {
                        chain.outputs.insert(id.clone(), output.clone());
                    }
                    None => unread.push(job_id.clone()),
                }
            }
        }
        if unread.is_empty() {
            return Ok(());
        }
        let refs: Vec<&str> = unread.iter().map(String::as_str).collect();
        for (job_id, text) in write::step_outputs(txn, &refs).await? {
            if let Some(output) = stored_output(&text) {
                self.chains_kept.keep_output(&job_id, output);
            }
        }
        for chain in chains.iter_mut() {
            for (id, step) in &chain.steps {
                if let Some(output) = step
                    .job_id
                    .as_ref()
                    .and_then(|job_id| self.chains_kept.outputs.get(job_id))
                {
                    chain
                        .outputs
                        .entry(id.clone())
                        .or_insert_with(|| output.clone());
                }
            }
        }
        Ok(())
    }

    /// Starts, skips or fails the steps of `chain` that can go now, until none can.
    async fn release(
        &mut self,
        chain: &mut Moving,
        now: i64,
        queues: &HashMap<String, queues::Model>,
        inserts: &mut Vec<jobs::Model>,
    ) {
        loop {
            let decision = chain.shape.graph.next(&chain.states());
            if decision.start.is_empty() && decision.skip.is_empty() {
                return;
            }
            for id in &decision.skip {
                let reason = chain.skip_reason(id);
                if let Some(step) = chain.step_mut(id) {
                    step.status = "skipped".into();
                    step.reason = Some(reason);
                    step.finished_at = Some(now);
                }
            }
            let ctx = chain.context();
            for id in &decision.start {
                let Some(def) = chain.shape.definition.step(id).cloned() else {
                    continue;
                };
                let job = self.step_job(chain, &def, &ctx, now, queues).await;
                let Some(step) = chain.step_mut(id) else {
                    continue;
                };
                match job {
                    Ok((job, unset)) => {
                        step.status = "started".into();
                        step.job_id = Some(job.id.clone());
                        step.started_at = Some(now);
                        let queue = queues.get(&job.queue);
                        self.stage(&Arc::new(job), unset, queue, now, inserts);
                    }
                    Err((class, reason)) => {
                        step.status = "failed".into();
                        step.error_class = Some(class.as_str().into());
                        step.reason = Some(reason);
                        step.started_at = Some(now);
                        step.finished_at = Some(now);
                    }
                }
            }
        }
    }

    /// Checks what a step takes (`what`) against its contract's input schema.
    async fn check_input(
        &self,
        def: &StepDef,
        value: &Value,
        what: &str,
    ) -> Result<(), (ErrorClass, String)> {
        let Some(pinned) = &def.contract else {
            return Ok(());
        };
        let found = self
            .library
            .check(
                &pinned.name,
                pinned.version,
                Part::Input,
                value,
                VIOLATIONS_REPORTED,
            )
            .await
            .map_err(|e| (ErrorClass::ContractViolation, e.to_string()))?;
        if found.is_empty() {
            return Ok(());
        }
        Err((
            ErrorClass::ContractViolation,
            crate::contract::validate::describe(
                what,
                &pinned.name,
                pinned.version,
                Part::Input,
                &found,
            ),
        ))
    }

    /// The job that makes a step's call, its references resolved and its input
    /// checked against its contract; or why the step cannot start.
    async fn step_job(
        &self,
        chain: &Moving,
        def: &StepDef,
        ctx: &Context,
        now: i64,
        queues: &HashMap<String, queues::Model>,
    ) -> Result<(jobs::Model, Unset), (ErrorClass, String)> {
        let rendered = match &def.input {
            // A template's step: its input rendered from the chain and checked
            // against the contract's input schema, then the template's call
            // rendered from that input.
            Some(input) => {
                let input = crate::chain::reference::render_json(input, ctx)
                    .map_err(|e| (ErrorClass::Reference, format!("template.input: {e}")))?;
                self.check_input(def, &input, "the template input").await?;
                let own = Context {
                    input: input.into(),
                    ..Default::default()
                };
                def.call
                    .render(&own)
                    .map_err(|e| (ErrorClass::Reference, format!("the template's {e}")))?
            }
            None => {
                let rendered = def
                    .call
                    .render(ctx)
                    .map_err(|e| (ErrorClass::Reference, e.to_string()))?;
                if let Some(crate::chain::definition::RenderedBody::Json(body)) = &rendered.body {
                    self.check_input(def, body, "the request body").await?;
                }
                rendered
            }
        };
        let (method, url, headers, params, body_kind, body) =
            // A value a reference brought in can still make a call that cannot
            // be sent: checked as a submitted job's call is.
            rendered
                .into_call()
                .checked(self.settings.call_limits.max_body_bytes)
                .map_err(|problems| {
                    let lines: Vec<String> = problems
                        .into_iter()
                        .map(|p| format!("request.{}: {}", p.field, p.expected))
                        .collect();
                    (ErrorClass::Reference, lines.join("; "))
                })?;
        if !queues.contains_key(&def.job.queue) {
            return Err((
                ErrorClass::Reference,
                format!(
                    "queue {} not found; create it with CreateQueue",
                    def.job.queue
                ),
            ));
        }
        let job = jobs::Model {
            id: scheduler::job_id(),
            queue: def.job.queue.clone(),
            status: Status::Queued.as_str().into(),
            priority: def.job.priority,
            attempt: 0,
            max_attempts: def.job.max_attempts,
            retry_base: 0,
            method,
            url,
            headers,
            params,
            body_kind,
            body,
            timeout_ms: def.job.timeout_ms,
            backoff_strategy: def.job.backoff_strategy.clone(),
            backoff_base_ms: def.job.backoff_base_ms,
            backoff_max_ms: def.job.backoff_max_ms,
            ttl_ms: chain.shape.ttl_ms,
            tags: chain.shape.tags.clone(),
            idempotency_key: None,
            created_at: now,
            scheduled_at: now,
            run_at: now,
            started_at: None,
            finished_at: None,
            lease_expires_at: None,
            expires_at: None,
            last_status_code: None,
            last_error_class: None,
            // A scheduled chain is its schedule's run, not its steps' jobs:
            // they name their chain, and the chain its schedule.
            schedule_id: None,
            fire_at: None,
            trace_context: chain.shape.trace_context.clone(),
            chain_id: Some(chain.head.id.clone()),
            step_id: Some(def.id.clone()),
            contract: def
                .contract
                .as_ref()
                .map(|c| library::label(&c.name, c.version)),
        };
        let unset = Unset {
            timeout: def.job.unset_timeout,
            max_attempts: def.job.unset_max_attempts,
            backoff: def.job.unset_backoff,
            // A step's job lives as long as its chain is kept.
            ttl: false,
        };
        Ok((job, unset))
    }
}
