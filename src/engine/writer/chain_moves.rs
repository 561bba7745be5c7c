//! Chains moving on, in the writer's transaction: before each claim, every chain
//! one of whose steps ended is moved on: the steps it unblocks rendered and
//! started as jobs (or skipped, or failed when a reference finds nothing or the
//! input breaks the step's contract), and the chain ended when all its steps
//! have. All of it commits with the outcome that caused it, so a kill -9 neither
//! loses progress nor makes it twice. Steps stand where their jobs stand (see
//! [`crate::chain::progress`]): a move writes the jobs it starts, the notes of
//! steps that ended without one, and the chain's end.

use std::collections::BTreeSet;

use serde_json::Value;

use super::*;
use crate::chain::definition::{Definition, StepDef};
use crate::chain::graph::{Graph, State};
use crate::chain::progress::{self, Step, StepStatus};
use crate::chain::reference::{Context, Output};
use crate::contract::library;
use crate::contract::registry::Part;
use crate::job::ErrorClass;
use crate::store::{attempts, chains as chain_rows};

/// Most violations a step's failure lists.
const VIOLATIONS_REPORTED: usize = 10;

/// What the open transaction does to chains, gathered as it goes and applied
/// before its claim.
#[derive(Default)]
pub(super) struct Moves {
    /// Chains started in this transaction, stored when it moves its chains.
    new: Vec<chain_rows::Model>,
    /// Chains to move: new ones, ones run again, ones a step of ended.
    chains: BTreeSet<String>,
    /// Jobs that ended in bulk, with no chain at hand (rescued for good, purged
    /// with their queue), to look up.
    unknown: Vec<String>,
}

impl Moves {
    /// A chain to move this turn.
    pub(super) fn add(&mut self, chain_id: &str) {
        if !self.chains.contains(chain_id) {
            self.chains.insert(chain_id.to_string());
        }
    }

    /// A chain started in this transaction, to store and move.
    pub(super) fn start(&mut self, chain: chain_rows::Model) {
        self.add(&chain.id);
        self.new.push(chain);
    }

    /// A chain started in this transaction with this idempotency key.
    pub(super) fn started_with_key(
        &self,
        namespace: &str,
        key: &str,
    ) -> Option<&chain_rows::Model> {
        self.new
            .iter()
            .find(|c| c.namespace == namespace && c.idempotency_key.as_deref() == Some(key))
    }

    pub(super) fn clear(&mut self) {
        *self = Moves::default();
    }

    fn is_empty(&self) -> bool {
        self.chains.is_empty() && self.unknown.is_empty()
    }
}

/// What references read of a step's response: `{status, headers, body}`, header
/// names in lower case, the body parsed when it is JSON.
fn output_of(record: &attempts::Model) -> Arc<Output> {
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
    Arc::new(Output {
        status: record.status_code.unwrap_or(0) as u16,
        headers,
        body,
    })
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
    /// The chain's namespace, which its steps' jobs are of.
    namespace: String,
    tags: String,
    ttl_ms: i64,
    trace_context: Option<String>,
}

/// What moves read again and again, kept across turns: chains' shapes by chain
/// id, and the outputs of ended steps by their job's id (an output never
/// changes once its job ended; a step run again runs as a new job).
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
            namespace: row.namespace.clone(),
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

    /// Forgets an ended chain (a run again reads it again).
    fn forget(&mut self, chain: &Moving) {
        self.shapes.remove(&chain.head.id);
        for step in chain.steps.values() {
            if let Some(job_id) = &step.job_id {
                self.outputs.remove(job_id);
            }
        }
    }
}

/// A chain moved in this transaction: where its steps stand, the outputs
/// references may read, and the notes to keep.
struct Moving {
    head: write::ChainHead,
    shape: Arc<Shape>,
    steps: BTreeMap<String, Step>,
    outputs: BTreeMap<String, Arc<Output>>,
    notes: Vec<String>,
    ended: bool,
}

impl Moving {
    fn states(&self) -> BTreeMap<String, State> {
        self.steps
            .iter()
            .map(|(id, s)| (id.clone(), s.status.state()))
            .collect()
    }

    /// Ends a step without a job to say so: its note is kept.
    fn note(
        &mut self,
        id: &str,
        status: StepStatus,
        reason: String,
        class: Option<ErrorClass>,
        now: i64,
    ) {
        if let Some(step) = self.steps.get_mut(id) {
            step.status = status;
            step.reason = Some(reason);
            step.error_class = class.map(|c| c.as_str().to_string());
            step.started_at = step.started_at.or(Some(now));
            step.finished_at = Some(now);
            self.notes.push(id.to_string());
        }
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
                    .is_some_and(|s| matches!(s.status, StepStatus::Succeeded | StepStatus::Failed))
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
        if self
            .steps
            .values()
            .any(|s| matches!(s.status.state(), State::Waiting | State::Running))
        {
            return;
        }
        let failed = self.steps.values().any(|s| s.status == StepStatus::Failed);
        let canceled = self
            .steps
            .values()
            .any(|s| s.status == StepStatus::Canceled);
        self.head.status = match (failed, canceled) {
            (true, _) => "failed",
            (false, true) => "canceled",
            (false, false) => "succeeded",
        }
        .into();
        self.ended = true;
    }
}

/// Where the steps of these chains stand, by chain id, read in the open
/// transaction.
pub(super) async fn steps_of(
    txn: &DatabaseTransaction,
    ids: &[&str],
    order: impl Fn(&str) -> Option<Arc<[String]>>,
) -> Result<HashMap<String, Vec<Step>>, StoreError> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let (step_jobs, step_notes) = write::step_records(txn, ids).await?;
    let mut jobs: HashMap<String, Vec<progress::StepJob>> = HashMap::new();
    for (chain_id, job) in step_jobs {
        jobs.entry(chain_id).or_default().push(job);
    }
    let mut notes: HashMap<String, Vec<crate::store::chain_steps::Model>> = HashMap::new();
    for note in step_notes {
        notes.entry(note.chain_id.clone()).or_default().push(note);
    }
    let mut found = HashMap::with_capacity(ids.len());
    for id in ids {
        let Some(order) = order(id) else { continue };
        let steps = progress::steps(
            &order,
            jobs.remove(*id).unwrap_or_default(),
            notes.remove(*id).unwrap_or_default(),
        );
        found.insert(id.to_string(), steps);
    }
    Ok(found)
}

impl Writer {
    /// Notes a chain step's job that reached an end, for its chain to move on.
    pub(super) fn note_step_end(&mut self, job: &jobs::Model) {
        if let (Some(chain_id), Some(_)) = (&job.chain_id, &job.step_id) {
            self.chain_moves.add(chain_id);
        }
    }

    /// Keeps what an ended step's job left for the steps after it: its last
    /// attempt's response (a failure step reads a failed one's).
    pub(super) fn note_step_left(&mut self, job: &jobs::Model, record: &attempts::Model) {
        if job.step_id.is_some() && record.status_code.is_some() {
            self.chains_kept.keep_output(&job.id, output_of(record));
        }
    }

    /// Notes jobs that ended in bulk statements (a lease ran out for good, a
    /// queue was purged): their chains, if any, are looked up.
    pub(super) fn note_ended_in_bulk(&mut self, events: &[Event]) {
        for e in events.iter().filter(|e| e.status.is_terminal()) {
            self.chain_moves.unknown.push(e.job_id.clone());
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
        // Started in this transaction: nobody else sees them, none of their steps
        // has a job or a note.
        let new: HashSet<String> = moves.new.iter().map(|c| c.id.clone()).collect();
        write::insert_chains(txn, std::mem::take(&mut moves.new)).await?;
        if !moves.unknown.is_empty() {
            let ids: Vec<&str> = moves.unknown.iter().map(String::as_str).collect();
            moves.chains.extend(write::chains_of_jobs(txn, &ids).await?);
        }
        let known: Vec<&str> = moves
            .chains
            .iter()
            .filter(|id| !new.contains(*id))
            .map(String::as_str)
            .collect();
        let mut heads = write::lock_chain_heads(txn, &known).await?;
        heads.extend(new.iter().map(|id| write::ChainHead {
            id: id.clone(),
            status: "running".into(),
        }));
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
        let running: Vec<&str> = heads
            .iter()
            .filter(|h| h.status == "running" && !new.contains(&h.id))
            .map(|h| h.id.as_str())
            .collect();
        let kept = &self.chains_kept;
        let mut steps =
            steps_of(txn, &running, |id| kept.shape(id).map(|s| s.order.clone())).await?;
        let mut chains = Vec::with_capacity(heads.len());
        for head in heads.into_iter().filter(|h| h.status == "running") {
            let Some(shape) = self.chains_kept.shape(&head.id) else {
                continue;
            };
            let steps = match steps.remove(&head.id) {
                Some(steps) => steps,
                None => progress::steps(&shape.order, Vec::new(), Vec::new()),
            };
            chains.push(Moving {
                head,
                shape,
                steps: steps.into_iter().map(|s| (s.id.clone(), s)).collect(),
                outputs: BTreeMap::new(),
                notes: Vec::new(),
                ended: false,
            });
        }
        self.outputs_of(txn, &mut chains).await?;
        // Queues of every step that may start, read once.
        let names: Vec<String> = chains
            .iter()
            .flat_map(|c| c.shape.definition.steps.iter().map(|s| s.job.queue.clone()))
            .collect();
        let queues = self
            .queues_for(txn, now, names.iter().map(String::as_str).collect())
            .await?;
        let mut inserts = Vec::new();
        for chain in &mut chains {
            self.release(chain, now, &queues, &mut inserts).await;
            chain.finish_if_done();
        }
        let mut notes = Vec::new();
        let mut ends = Vec::new();
        for chain in &chains {
            for id in &chain.notes {
                let position = chain.shape.order.iter().position(|o| o == id);
                if let (Some(step), Some(position)) = (chain.steps.get(id), position) {
                    notes.push(progress::note(&chain.head.id, position, step));
                }
            }
            if chain.ended {
                self.chains_kept.forget(chain);
                ends.push(write::ChainEnd {
                    id: chain.head.id.clone(),
                    status: chain.head.status.clone(),
                    at: now,
                    expires_at: now + chain.shape.ttl_ms,
                });
            }
        }
        write::write_notes(txn, notes).await?;
        write::end_chains(txn, &ends).await?;
        if !inserts.is_empty() {
            write::insert_jobs(txn, inserts).await?;
        }
        Ok(())
    }

    /// Gives each chain the outputs of its ended steps: kept ones, and the others
    /// read from their jobs' last attempts (after a restart, or when another
    /// process ran the step).
    async fn outputs_of(
        &mut self,
        txn: &DatabaseTransaction,
        chains: &mut [Moving],
    ) -> Result<(), StoreError> {
        let ended = |s: &Step| matches!(s.status, StepStatus::Succeeded | StepStatus::Failed);
        let mut unread = Vec::new();
        for chain in chains.iter() {
            for step in chain.steps.values().filter(|s| ended(s)) {
                if let Some(job_id) = &step.job_id
                    && !self.chains_kept.outputs.contains_key(job_id)
                {
                    unread.push(job_id.as_str());
                }
            }
        }
        if !unread.is_empty() {
            for record in write::last_attempts(txn, &unread).await? {
                if record.status_code.is_some() {
                    self.chains_kept
                        .keep_output(&record.job_id, output_of(&record));
                }
            }
        }
        for chain in chains.iter_mut() {
            for (id, step) in &chain.steps {
                if let Some(output) = step
                    .job_id
                    .as_ref()
                    .filter(|_| ended(step))
                    .and_then(|job_id| self.chains_kept.outputs.get(job_id))
                {
                    chain.outputs.insert(id.clone(), output.clone());
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
                chain.note(id, StepStatus::Skipped, reason, None, now);
            }
            let ctx = chain.context();
            for id in &decision.start {
                let Some(def) = chain.shape.definition.step(id).cloned() else {
                    continue;
                };
                match self.step_job(chain, &def, &ctx, now, queues).await {
                    Ok((job, unset)) => {
                        if let Some(step) = chain.steps.get_mut(id) {
                            step.status = StepStatus::Queued;
                            step.job_id = Some(job.id.clone());
                            step.started_at = Some(now);
                        }
                        let queue = queues.get(&job.queue);
                        self.stage(&Arc::new(job), unset, queue, now, inserts);
                    }
                    Err((class, reason)) => {
                        chain.note(id, StepStatus::Failed, reason, Some(class), now);
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
                    crate::namespace::local(&def.job.queue)
                ),
            ));
        }
        let id = scheduler::job_id();
        // A step's headers hold no secret unless its chain is from before they
        // were refused in a step's call: sealed with the job then, if they can be.
        let headers = headers
            .stored(
                self.settings.call_limits.keyring.as_ref(),
                crate::secret::Row::job(&id),
            )
            .map_err(|e| {
                (
                    ErrorClass::Reference,
                    format!("request.headers[{:?}]: {e}", e.name),
                )
            })?;
        let job = jobs::Model {
            id,
            namespace: chain.shape.namespace.clone(),
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
            // A step is signed by its queue, and follows its redirects.
            signing: None,
            follow_redirects: None,
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
