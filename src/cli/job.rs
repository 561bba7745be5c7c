//! `jobqueue job ...`: submit, read, follow and manage jobs.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

use super::args::{JobCommand, ListArgs, Output, SubmitArgs, WatchArgs};
use super::connect::Clients;
use super::fail::Failure;
use super::{json, render, submit, watch};
use crate::proto;

pub async fn run(
    clients: &mut Clients,
    command: JobCommand,
    output: Output,
) -> Result<u8, Failure> {
    match command {
        JobCommand::Submit(args) => submit_jobs(clients, *args, output).await,
        JobCommand::Get { id } => {
            let job = clients
                .jobs
                .get_job(proto::GetJobRequest { id })
                .await?
                .into_inner();
            show_job(&job, output);
            Ok(0)
        }
        JobCommand::Result { id } => {
            let result = clients
                .jobs
                .get_job_result(proto::GetJobResultRequest { id })
                .await?
                .into_inner();
            show_result(&result, output);
            Ok(0)
        }
        JobCommand::Cancel { id } => {
            let job = clients
                .jobs
                .cancel_job(proto::CancelJobRequest { id })
                .await?
                .into_inner();
            changed(&job, "canceled", output);
            Ok(0)
        }
        JobCommand::Retry { id } => {
            let job = clients
                .jobs
                .retry_job(proto::RetryJobRequest { id })
                .await?
                .into_inner();
            changed(&job, "queued again", output);
            Ok(0)
        }
        JobCommand::Delete { id } => {
            clients
                .jobs
                .delete_job(proto::DeleteJobRequest { id: id.clone() })
                .await?;
            match output {
                Output::Json => println!("{}", serde_json::json!({"id": id, "deleted": true})),
                Output::Human => println!("{id} deleted"),
            }
            Ok(0)
        }
        JobCommand::List(args) => list(clients, args, output).await,
        JobCommand::Watch(args) => watch_jobs(clients, args, output).await,
    }
}

async fn submit_jobs(
    clients: &mut Clients,
    args: SubmitArgs,
    output: Output,
) -> Result<u8, Failure> {
    let Some(path) = args.jobs.clone() else {
        let spec = submit::one(&args)?;
        let answer = clients
            .jobs
            .submit_job(proto::SubmitJobRequest { job: Some(spec) })
            .await?
            .into_inner();
        match output {
            Output::Json => json::print("jobqueue.v1.SubmitJobResponse", &answer),
            Output::Human if answer.existing => {
                println!(
                    "{} (already submitted with this idempotency key)",
                    answer.id
                )
            }
            Output::Human => println!("{}", answer.id),
        }
        if !args.wait {
            return Ok(0);
        }
        return watch::until_finished(clients, vec![answer.id], output).await;
    };
    let specs = submit::many(&args, &path)?;
    let bar = (output == Output::Human && std::io::stderr().is_terminal()).then(|| {
        let bar = ProgressBar::new(specs.len() as u64);
        bar.set_style(
            ProgressStyle::with_template("submitting [{bar:30}] {pos}/{len}")
                .expect("a valid template")
                .progress_chars("=> "),
        );
        bar
    });
    let mut ids = Vec::with_capacity(specs.len());
    for batch in specs.chunks(submit::BATCH) {
        let answers = clients
            .jobs
            .submit_jobs(proto::SubmitJobsRequest {
                jobs: batch.to_vec(),
            })
            .await
            .map_err(|status| {
                let mut failure = Failure::from(status);
                failure.message += &format!(
                    " (jobs {} to {} of the file; {} before them were submitted)",
                    ids.len() + 1,
                    ids.len() + batch.len(),
                    ids.len()
                );
                failure
            })?
            .into_inner();
        for answer in answers.results {
            match output {
                Output::Json => json::print("jobqueue.v1.SubmitJobResponse", &answer),
                Output::Human if bar.is_none() => println!("{}", answer.id),
                Output::Human => {}
            }
            ids.push(answer.id);
        }
        if let Some(bar) = &bar {
            bar.inc(batch.len() as u64);
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
        eprintln!("{} jobs submitted", ids.len());
    }
    if !args.wait {
        return Ok(0);
    }
    watch::until_finished(clients, ids, output).await
}

async fn list(clients: &mut Clients, args: ListArgs, output: Output) -> Result<u8, Failure> {
    let statuses = args
        .statuses
        .iter()
        .map(|s| {
            proto::JobStatus::from_str_name(&format!("JOB_STATUS_{}", s.to_uppercase()))
                .map(|s| s as i32)
                .ok_or_else(|| {
                    Failure::usage(format!(
                        "--status {s:?}: expected queued, running, succeeded, failed or canceled"
                    ))
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let page = clients
        .jobs
        .list_jobs(proto::ListJobsRequest {
            page_size: args.limit,
            page_token: args.page_token.unwrap_or_default(),
            statuses,
            tags: args.tags,
            queue: args.queue.unwrap_or_default(),
            ..Default::default()
        })
        .await?
        .into_inner();
    if output == Output::Json {
        json::print("jobqueue.v1.ListJobsResponse", &page);
        return Ok(0);
    }
    let rows: Vec<Vec<String>> = page
        .jobs
        .iter()
        .map(|job| {
            vec![
                job.id.clone(),
                render::status(job.status),
                job.queue.clone(),
                format!("{}/{}", job.attempt, job.max_attempts),
                render::when(job.create_time.as_ref()),
                call(job.request.as_ref()),
            ]
        })
        .collect();
    println!(
        "{}",
        render::table(
            &["ID", "STATUS", "QUEUE", "ATTEMPT", "CREATED", "CALL"],
            &rows
        )
    );
    if !page.next_page_token.is_empty() {
        println!(
            "{} of {} shown; next page: --page-token {}",
            page.jobs.len(),
            page.total_size,
            page.next_page_token
        );
    }
    Ok(0)
}

async fn watch_jobs(clients: &mut Clients, args: WatchArgs, output: Output) -> Result<u8, Failure> {
    if !args.ids.is_empty() && (args.all || !args.tags.is_empty() || args.queue.is_some()) {
        return Err(Failure::usage(
            "watch: either job ids, or --tag/--queue/--all: not both",
        ));
    }
    if !args.ids.is_empty() {
        return watch::until_finished(clients, args.ids, output).await;
    }
    if !args.all && args.tags.is_empty() && args.queue.is_none() {
        return Err(Failure::usage("watch: job ids, or --tag, --queue or --all"));
    }
    let request = proto::WatchJobsRequest {
        tags: args.tags,
        queue: args.queue.unwrap_or_default(),
        all: args.all,
        ..Default::default()
    };
    watch::changes(clients, request, output).await
}

/// `POST https://...`.
fn call(request: Option<&proto::HttpRequest>) -> String {
    match request {
        Some(r) if r.method.is_empty() => format!("GET {}", r.url),
        Some(r) => format!("{} {}", r.method.to_uppercase(), r.url),
        None => "-".into(),
    }
}

fn changed(job: &proto::Job, what: &str, output: Output) {
    match output {
        Output::Json => json::print("jobqueue.v1.Job", job),
        Output::Human => println!("{} {what}: {}", job.id, render::status(job.status)),
    }
}

fn show_job(job: &proto::Job, output: Output) {
    if output == Output::Json {
        json::print("jobqueue.v1.Job", job);
        return;
    }
    let mut pairs = vec![
        ("id", job.id.clone()),
        ("status", render::status(job.status)),
        ("queue", job.queue.clone()),
        (
            "attempt",
            format!("{} of {}", job.attempt, job.max_attempts),
        ),
        ("call", call(job.request.as_ref())),
        ("created", render::when(job.create_time.as_ref())),
        ("due", render::when(job.schedule_time.as_ref())),
        ("started", render::when(job.start_time.as_ref())),
        ("finished", render::when(job.finish_time.as_ref())),
    ];
    if job.next_attempt_time.is_some() {
        pairs.push(("next attempt", render::when(job.next_attempt_time.as_ref())));
    }
    pairs.push(("expires", render::when(job.expire_time.as_ref())));
    if job.last_status_code != 0 {
        pairs.push(("last response", job.last_status_code.to_string()));
    }
    let class = render::error_class(job.last_error_class);
    if !class.is_empty() {
        pairs.push(("last error", class));
    }
    if !job.tags.is_empty() {
        pairs.push(("tags", job.tags.join(", ")));
    }
    if !job.schedule_id.is_empty() {
        pairs.push(("schedule", job.schedule_id.clone()));
    }
    if !job.chain_id.is_empty() {
        pairs.push(("chain", format!("{} (step {})", job.chain_id, job.step_id)));
    }
    println!("{}", render::fields(&pairs));
}

fn show_result(result: &proto::JobResult, output: Output) {
    if output == Output::Json {
        json::print("jobqueue.v1.JobResult", result);
        return;
    }
    println!("{}  {}", result.id, render::status(result.status));
    for attempt in &result.attempts {
        let outcome = match &attempt.response {
            Some(response) => format!("{}", response.status_code),
            None => format!(
                "{}: {}",
                render::error_class(attempt.error_class),
                attempt.error_message
            ),
        };
        println!(
            "  attempt {}  {}  {}  {outcome}",
            attempt.number,
            render::when(attempt.start_time.as_ref()),
            render::duration(attempt.duration.as_ref()),
        );
    }
    let Some(response) = result
        .final_attempt
        .as_ref()
        .and_then(|a| a.response.as_ref())
    else {
        return;
    };
    match &response.body {
        Some(proto::http_response::Body::Json(_)) => {
            // The exact bytes the target sent, re-indented for reading.
            let body: serde_json::Value =
                serde_json::from_slice(&response.json_bytes).unwrap_or_default();
            println!(
                "{}",
                serde_json::to_string_pretty(&body).unwrap_or_default()
            );
        }
        Some(proto::http_response::Body::Text(text)) => println!("{text}"),
        Some(proto::http_response::Body::Raw(raw)) => println!("({} bytes of binary)", raw.len()),
        None => {}
    }
    if response.truncated {
        println!("(cut: {} bytes in all)", response.body_size);
    }
}
