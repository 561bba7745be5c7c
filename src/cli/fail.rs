//! What a client command ends with, and its exit code.
//!
//! 0: done (every job watched succeeded); 1: the service refused the request or
//! could not be reached; 2: the command line itself is wrong; 3: a job failed;
//! 4: a job was canceled (and none failed).

use std::process::ExitCode;

use tonic_types::StatusExt;

/// Exit codes of the client commands.
pub const FAILED_JOB: u8 = 3;
pub const CANCELED_JOB: u8 = 4;
const REFUSED: u8 = 1;
const USAGE: u8 = 2;

/// A command that could not do what was asked: a line to print, the fields a
/// refusal named, and the exit code.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub message: String,
    pub fields: Vec<(String, String)>,
}

impl Failure {
    /// The command line asked for something that cannot be sent.
    pub fn usage(message: impl Into<String>) -> Failure {
        Failure {
            code: USAGE,
            message: message.into(),
            fields: Vec::new(),
        }
    }

    pub fn unreachable(message: impl Into<String>) -> Failure {
        Failure {
            code: REFUSED,
            message: message.into(),
            fields: Vec::new(),
        }
    }

    /// Prints it to standard error (as JSON with `--output json`) and gives the
    /// exit code.
    pub fn report(self, json: bool) -> ExitCode {
        if json {
            let fields: Vec<_> = self
                .fields
                .iter()
                .map(|(field, description)| {
                    serde_json::json!({"field": field, "description": description})
                })
                .collect();
            eprintln!(
                "{}",
                serde_json::json!({"error": self.message, "fieldViolations": fields})
            );
        } else {
            eprintln!("jobqueue: {}", self.message);
            for (field, description) in &self.fields {
                eprintln!("  {field}: {description}");
            }
        }
        ExitCode::from(self.code)
    }
}

impl From<tonic::Status> for Failure {
    fn from(status: tonic::Status) -> Failure {
        let fields: Vec<(String, String)> = status
            .get_details_bad_request()
            .map(|bad| {
                bad.field_violations
                    .into_iter()
                    .map(|v| (v.field, v.description))
                    .collect()
            })
            .unwrap_or_default();
        // A refusal naming fields lists them below; its message says the same.
        let message = if status.message().is_empty() || !fields.is_empty() {
            format!("{:?}", status.code())
        } else {
            format!("{:?}: {}", status.code(), status.message())
        };
        Failure {
            code: REFUSED,
            message,
            fields,
        }
    }
}
