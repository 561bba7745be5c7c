//! The command line as a client of a running service, the way `kubectl` and
//! `temporal` are: `jobqueue job ...`, `jobqueue queue ...`,
//! `jobqueue schedule ...`. Human output by default (tables, local times, live
//! progress on a terminal), the API's JSON with `--output json`; the exit code
//! says how the command, and the jobs it waited for, ended (see [`fail`]).

pub mod args;
mod connect;
pub mod fail;
mod job;
mod json;
mod queue;
mod render;
mod schedule;
mod submit;
mod watch;

use std::process::ExitCode;

use args::{ClientArgs, JobCommand, Output, QueueCommand, ScheduleCommand};

/// What a client command acts on.
pub enum Target {
    Job(JobCommand),
    Queue(QueueCommand),
    Schedule(ScheduleCommand),
}

/// Runs one client command to its end.
pub async fn run(client: ClientArgs, target: Target) -> ExitCode {
    let output = client.output;
    let done = async {
        let mut clients = connect::connect(&client).await?;
        match target {
            Target::Job(command) => job::run(&mut clients, command, output).await,
            Target::Queue(command) => queue::run(&mut clients, command, output).await,
            Target::Schedule(command) => schedule::run(&mut clients, command, output).await,
        }
    };
    match done.await {
        Ok(code) => ExitCode::from(code),
        Err(failure) => failure.report(output == Output::Json),
    }
}
