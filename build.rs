//! Generates the gRPC code and the descriptor set that server reflection serves.
//! Uses the vendored `protoc`, so the build needs nothing installed.

use std::path::{Path, PathBuf};

/// The build's identity, for the metrics' build info: `JOBQUEUE_BUILD` when the
/// build sets it (an image build passes its commit), else the commit git reports
/// for this checkout, else `unknown`.
fn build_identity() -> String {
    println!("cargo:rerun-if-env-changed=JOBQUEUE_BUILD");
    if let Ok(build) = std::env::var("JOBQUEUE_BUILD")
        && !build.trim().is_empty()
    {
        return build;
    }
    // A new commit or another branch builds again.
    if let Ok(head) = std::fs::read_to_string(".git/HEAD") {
        println!("cargo:rerun-if-changed=.git/HEAD");
        if let Some(branch) = head.trim().strip_prefix("ref: ") {
            let branch = Path::new(".git").join(branch);
            if branch.exists() {
                println!("cargo:rerun-if-changed={}", branch.display());
            }
        }
    }
    std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .filter(|commit| !commit.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

fn main() -> anyhow::Result<()> {
    println!("cargo:rustc-env=JOBQUEUE_BUILD={}", build_identity());
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY: build scripts are single-threaded; nothing else reads the environment here.
    unsafe { std::env::set_var("PROTOC", protoc) };
    let include = protoc_bin_vendored::include_path()?;

    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let protos = [
        "proto/jobqueue/v1/jobs.proto",
        "proto/jobqueue/v1/queues.proto",
        "proto/jobqueue/v1/schedules.proto",
        "proto/jobqueue/v1/contracts.proto",
        "proto/jobqueue/v1/chains.proto",
        "proto/jobqueue/v1/templates.proto",
        "proto/jobqueue/v1/keys.proto",
        "proto/jobqueue/v1/audit.proto",
    ];
    for proto in &protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    tonic_prost_build::configure()
        .file_descriptor_set_path(out_dir.join("jobqueue_descriptor.bin"))
        .compile_protos(
            &protos.map(PathBuf::from),
            &[PathBuf::from("proto"), include],
        )?;
    Ok(())
}
