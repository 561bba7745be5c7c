//! The API's contract check (`proto/check.sh`, run by `.ci/run`): buf's lint rules,
//! and a breaking change to the proto fails unless its commit declares it.
//! Tried on a scratch clone of this repository, with commits made there.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;

const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// A clone of this repository's HEAD, to commit proto changes in.
struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Scratch {
        let dir = tempfile::tempdir().unwrap();
        let cloned = Command::new("git")
            .args(["clone", "-q", "--no-hardlinks", REPO])
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(cloned.success(), "git clone of {REPO}");
        Scratch { dir }
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    fn git(&self, args: &[&str]) {
        let out = Command::new("git")
            .args(["-c", "user.name=test", "-c", "user.email=test@example.com"])
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {}", text(&out));
    }

    /// Replaces `from` by `to` in `file`, which must hold it.
    fn edit(&self, file: &str, from: &str, to: &str) {
        let path = self.path(file);
        let before = std::fs::read_to_string(&path).unwrap();
        assert!(before.contains(from), "{file} holds {from:?}");
        std::fs::write(&path, before.replacen(from, to, 1)).unwrap();
    }

    fn commit(&self, message: &str) {
        self.git(&["commit", "-qam", message]);
    }

    /// Runs the check; its exit status and everything it printed.
    fn check(&self) -> (bool, String) {
        self.check_from(None)
    }

    /// [`Scratch::check`] of a branch that left the main line at `base`.
    fn check_from(&self, base: Option<&str>) -> (bool, String) {
        let mut command = Command::new("bash");
        command
            .arg(self.path("proto/check.sh"))
            // buf as this repository's own check installed it.
            .env("JOBQUEUE_TOOLS", Path::new(REPO).join(".tools"))
            .env_remove("JOBQUEUE_PROTO_BASE");
        if let Some(base) = base {
            command.env("JOBQUEUE_PROTO_BASE", base);
        }
        let out = command.output().unwrap();
        (out.status.success(), text(&out))
    }

    fn head(&self) -> String {
        let out = Command::new("git")
            .args(["rev-parse", "HEAD"])
            .current_dir(self.dir.path())
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

const JOBS: &str = "proto/jobqueue/v1/jobs.proto";
const RENAME_FROM: &str = "  int32 priority = 3;";
const RENAME_TO: &str = "  int32 precedence = 3;";

#[test]
fn a_breaking_change_fails_the_check_until_its_commit_declares_it() {
    if !tool_available(Command::new("npm").arg("--version"), "npm (to install buf)") {
        return;
    }
    let scratch = Scratch::new();
    let (ok, report) = scratch.check();
    assert!(ok, "the repository's own proto passes: {report}");

    // A field renamed: JSON clients and generated code break.
    scratch.edit(JOBS, RENAME_FROM, RENAME_TO);
    let (ok, report) = scratch.check();
    assert!(!ok, "an uncommitted rename fails: {report}");
    assert!(
        report.contains("changed name from \"priority\" to \"precedence\""),
        "{report}"
    );

    scratch.commit("Rename priority");
    let (ok, report) = scratch.check();
    assert!(!ok, "an undeclared breaking commit fails: {report}");
    assert!(report.contains("declare it"), "{report}");

    // Declared in the message alone: still no word to clients.
    scratch.git(&[
        "commit",
        "-q",
        "--amend",
        "-m",
        "Rename priority\n\nBreaking-Change: JobSpec.priority is precedence",
    ]);
    let (ok, report) = scratch.check();
    assert!(!ok, "a break missing from CHANGELOG.md fails: {report}");

    scratch.edit(
        "CHANGELOG.md",
        "## Unreleased\n",
        "## Unreleased\n\n- `JobSpec.priority` is `precedence` now.\n",
    );
    scratch.git(&["commit", "-q", "--amend", "-a", "--no-edit"]);
    let (ok, report) = scratch.check();
    assert!(ok, "a declared break passes: {report}");
    assert!(report.contains("declared"), "{report}");
}

#[test]
fn an_added_field_passes_and_an_uncommented_one_fails_lint() {
    if !tool_available(Command::new("npm").arg("--version"), "npm (to install buf)") {
        return;
    }
    let scratch = Scratch::new();
    let added = "  // Free-form labels to list and watch by: at most 32, each 1 to 128 bytes.\n  repeated string tags = 8;\n  // For people.\n  string note = 14;\n";
    scratch.edit(
        JOBS,
        "  // Free-form labels to list and watch by: at most 32, each 1 to 128 bytes.\n  repeated string tags = 8;\n",
        added,
    );
    scratch.commit("Add a note");
    let (ok, report) = scratch.check();
    assert!(ok, "a new field is no break: {report}");
    assert!(report.contains("no breaking change"), "{report}");

    scratch.edit(
        JOBS,
        "  // For people.\n  string note = 14;\n",
        "  string note = 14;\n",
    );
    let (ok, report) = scratch.check();
    assert!(!ok, "a field without a comment fails lint: {report}");
    assert!(
        report.contains("\"note\" should have a non-empty comment"),
        "{report}"
    );
}

#[test]
fn a_branch_is_checked_from_where_it_left_the_main_line() {
    if !tool_available(Command::new("npm").arg("--version"), "npm (to install buf)") {
        return;
    }
    let scratch = Scratch::new();
    let base = scratch.head();
    scratch.edit(JOBS, RENAME_FROM, RENAME_TO);
    scratch.commit("Rename priority");
    // A later change that breaks nothing does not hide the earlier one.
    scratch.edit(JOBS, "  // Higher runs first;", "  // Higher runs sooner;");
    scratch.commit("Reword a comment");
    let (ok, report) = scratch.check_from(Some(&base));
    assert!(!ok, "the branch's undeclared rename fails: {report}");
    assert!(
        report.contains("changed name from \"priority\" to \"precedence\""),
        "{report}"
    );

    scratch.edit(
        "CHANGELOG.md",
        "## Unreleased\n",
        "## Unreleased\n\n- `JobSpec.priority` is `precedence` now.\n",
    );
    scratch.git(&[
        "commit",
        "-qam",
        "Say so\n\nBreaking-Change: JobSpec.priority is precedence",
    ]);
    let (ok, report) = scratch.check_from(Some(&base));
    assert!(ok, "declared on the branch: {report}");
}
