//! SeaORM entities: the tables `migrations/` creates, as Rust types.

pub mod jobs {
    use sea_orm::entity::prelude::*;

    /// One job: what to call, how to retry it, and where it stands.
    #[derive(Clone, Debug, Default, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "jobs")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        /// The namespace it belongs to (see `crate::namespace`).
        pub namespace: String,
        pub queue: String,
        pub status: String,
        pub priority: i32,
        /// Attempts made, counting one in flight.
        pub attempt: i32,
        /// Attempts allowed per budget.
        pub max_attempts: i32,
        /// Attempts made before the latest RetryJob; the budget counts from here.
        pub retry_base: i32,
        pub method: String,
        pub url: String,
        /// JSON object of header name to value.
        pub headers: String,
        /// JSON object of query parameter name to value.
        pub params: String,
        /// `json`, `text` or `raw` when there is a body.
        pub body_kind: Option<String>,
        pub body: Option<Vec<u8>>,
        pub timeout_ms: i64,
        pub backoff_strategy: String,
        pub backoff_base_ms: i64,
        pub backoff_max_ms: i64,
        pub ttl_ms: i64,
        /// JSON array of tags; `job_tags` indexes them.
        pub tags: String,
        pub idempotency_key: Option<String>,
        pub created_at: i64,
        pub scheduled_at: i64,
        /// When a queued job is next due.
        pub run_at: i64,
        pub started_at: Option<i64>,
        pub finished_at: Option<i64>,
        pub lease_expires_at: Option<i64>,
        pub expires_at: Option<i64>,
        pub last_status_code: Option<i32>,
        pub last_error_class: Option<String>,
        /// The schedule that submitted it.
        pub schedule_id: Option<String>,
        /// The due time it ran for, when its schedule's timetable made it due
        /// (not when it was triggered by hand).
        pub fire_at: Option<i64>,
        /// The trace it was submitted in (see `crate::telemetry::TraceContext`);
        /// for a schedule's run, the schedule's.
        pub trace_context: Option<String>,
        /// The chain this job is a step of, and which step.
        pub chain_id: Option<String>,
        pub step_id: Option<String>,
        /// `name/version` of the contract whose output schema its response body
        /// must fit (a chain step's).
        pub contract: Option<String>,
        /// The secrets its requests are signed with, sealed for it (see
        /// `crate::secret::signing`); none: its queue's, if any.
        pub signing: Option<String>,
        /// Redirects its calls follow, each hop judged; none: its queue's setting.
        pub follow_redirects: Option<i32>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod job_tags {
    use sea_orm::entity::prelude::*;

    /// One tag of one job, so jobs can be found by tag.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "job_tags")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub tag: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub job_id: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod attempts {
    use sea_orm::entity::prelude::*;

    /// One attempt of one job and what came back.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "attempts")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub job_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub number: i32,
        pub started_at: i64,
        pub finished_at: i64,
        pub duration_ms: i64,
        pub status_code: Option<i32>,
        /// JSON object of header name to value.
        pub headers: Option<String>,
        pub body: Option<Vec<u8>>,
        pub body_size: i64,
        pub truncated: bool,
        pub error_class: Option<String>,
        pub error_message: Option<String>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod queues {
    use sea_orm::entity::prelude::*;

    /// One named queue: its limits, its job defaults, and whether it is paused.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "queues")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub name: String,
        /// The namespace it belongs to (see `crate::namespace`).
        pub namespace: String,
        pub paused: bool,
        /// Most calls of this queue open at once, across every process.
        pub max_concurrency: Option<i32>,
        /// Most calls started per second, on average.
        pub rate_per_second: Option<f64>,
        /// Most calls started at once after an idle spell.
        pub rate_burst: Option<i32>,
        /// The rate limiter's bucket: tokens left at `tokens_at`.
        pub tokens: f64,
        pub tokens_at: i64,
        pub default_timeout_ms: Option<i64>,
        pub default_max_attempts: Option<i32>,
        pub default_backoff_strategy: Option<String>,
        pub default_backoff_base_ms: Option<i64>,
        pub default_backoff_max_ms: Option<i64>,
        pub default_ttl_ms: Option<i64>,
        pub created_at: i64,
        pub updated_at: i64,
        /// Redirects its jobs' calls follow, each hop judged; 0: none.
        pub follow_redirects: i32,
        /// The secrets its jobs' requests are signed with, sealed for it (see
        /// `crate::secret::signing`).
        pub signing: Option<String>,
        /// Where its calls may go, as `JOBQUEUE_OUTBOUND_ALLOW` writes it (see
        /// `crate::outbound::address::RuleList::admits`); none: anywhere allowed.
        pub destinations: Option<String>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod schedules {
    use sea_orm::entity::prelude::*;

    /// One schedule: its timetable, where it stands, and the job each run submits
    /// (in the jobs table's terms).
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "schedules")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        /// The namespace it belongs to (see `crate::namespace`).
        pub namespace: String,
        pub description: String,
        /// `cron`, `interval` or `once`.
        pub kind: String,
        pub cron: Option<String>,
        pub interval_ms: Option<i64>,
        pub once_at: Option<i64>,
        /// IANA name; `UTC` by default.
        pub time_zone: String,
        pub start_at: Option<i64>,
        pub end_at: Option<i64>,
        pub catchup_window_ms: i64,
        /// `allow` or `skip`.
        pub overlap: String,
        pub skipped_count: i64,
        pub paused: bool,
        /// The next due time; `None` while paused or when none is left.
        pub next_fire_at: Option<i64>,
        pub run_count: i64,
        pub last_fire_at: Option<i64>,
        pub queue: String,
        pub priority: i32,
        pub method: String,
        pub url: String,
        pub headers: String,
        pub params: String,
        pub body_kind: Option<String>,
        pub body: Option<Vec<u8>>,
        pub timeout_ms: i64,
        pub max_attempts: i32,
        pub backoff_strategy: String,
        pub backoff_base_ms: i64,
        pub backoff_max_ms: i64,
        pub ttl_ms: i64,
        pub tags: String,
        /// Which job settings are left to the queue's defaults: see `Inherit`.
        pub inherit: i32,
        pub created_at: i64,
        pub updated_at: i64,
        /// The trace it was created in; its runs' traces link to it.
        pub trace_context: Option<String>,
        /// A schedule that fires a chain: the `ChainSpec` message as clients
        /// read it back, its versions pinned.
        pub chain_spec: Option<Vec<u8>>,
        /// ...and the chain each run starts: JSON, see `crate::chain::Scheduled`.
        pub chain: Option<String>,
        /// A job a template made: the contract (`name/version`) each run's job
        /// holds its response to, as a submitted job made from it does.
        pub contract: Option<String>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod contracts {
    use sea_orm::entity::prelude::*;

    /// One version of a contract: JSON Schema documents as JSON text.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "contracts")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub name: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub version: i32,
        /// The namespace it belongs to (see `crate::namespace`).
        pub namespace: String,
        pub description: String,
        pub input_schema: Option<String>,
        pub output_schema: Option<String>,
        pub active: bool,
        pub created_at: i64,
        pub deactivated_at: Option<i64>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod chains {
    use sea_orm::entity::prelude::*;

    /// One chain: its input, its steps as checked at submit (JSON, see
    /// `crate::chain::definition`), and where it stands.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "chains")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        /// The namespace it belongs to (see `crate::namespace`).
        pub namespace: String,
        /// `running`, `succeeded`, `failed` or `canceled`.
        pub status: String,
        pub input: String,
        pub definition: String,
        pub tags: String,
        pub idempotency_key: Option<String>,
        pub ttl_ms: i64,
        pub created_at: i64,
        pub updated_at: i64,
        pub finished_at: Option<i64>,
        pub expires_at: Option<i64>,
        pub schedule_id: Option<String>,
        pub trace_context: Option<String>,
        /// The due time a schedule fired it for; `None` for a triggered run or a
        /// chain no schedule made.
        pub fire_at: Option<i64>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod audit_entries {
    use sea_orm::entity::prelude::*;

    /// One change a call asked of the service, and how it ended: see
    /// `proto/jobqueue/v1/audit.proto`.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "audit_entries")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub at: i64,
        pub namespace: String,
        pub key_id: Option<String>,
        pub peer: Option<String>,
        pub action: String,
        pub object: String,
        /// `OK`, or the gRPC code of the refusal.
        pub outcome: String,
        pub detail: Option<String>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod chain_steps {
    use sea_orm::entity::prelude::*;

    /// A note of how one step of one chain ended, kept when no job of the step
    /// says so: skipped, failed before its call could be made, or ended by its
    /// chain's cancel. Other steps stand where their jobs stand (see
    /// `chain::progress`).
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "chain_steps")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub chain_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub step_id: String,
        /// Its place in the chain as submitted.
        pub position: i32,
        /// `failed`, `skipped` or `canceled`.
        pub status: String,
        /// The step's job, when it had one (a step canceled with its chain).
        pub job_id: Option<String>,
        pub reason: Option<String>,
        pub error_class: Option<String>,
        pub started_at: Option<i64>,
        pub finished_at: Option<i64>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod templates {
    use sea_orm::entity::prelude::*;

    /// One version of a template: a call with references to an input (JSON, see
    /// `crate::chain::definition::CallTemplate`), its job's settings (JSON,
    /// `crate::chain::definition::StepJob`) and the contract it keeps.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "templates")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub name: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub version: i32,
        /// The namespace it belongs to (see `crate::namespace`).
        pub namespace: String,
        pub description: String,
        pub call: String,
        pub job: String,
        pub contract: Option<String>,
        pub active: bool,
        pub created_at: i64,
        pub deactivated_at: Option<i64>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod api_keys {
    use sea_orm::entity::prelude::*;

    /// One API key: who it speaks for and what it may do; its secret only as a
    /// hash.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "api_keys")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub namespace: String,
        /// Space-separated scope names.
        pub scopes: String,
        /// Hex SHA-256 of the secret.
        pub secret_hash: String,
        pub description: String,
        /// `file` or `api`.
        pub source: String,
        pub created_at: i64,
        pub expires_at: i64,
        pub revoked_at: Option<i64>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
