//! The probes: checks that another namespace's object answers exactly as one
//! that never was (`hidden!`, `refused_alike`, `listed_alike`), the made-up
//! names and ids to compare with, and `bare` for names shown unqualified.

use std::fmt::Debug;
use std::time::Duration;

use crate::common::*;
use tonic::{Code, Status};

/// How long a watch that must be refused may stay silent before it counts as
/// served: a refusal comes at once.
pub const SILENCE: Duration = Duration::from_millis(1500);
/// A name of the same shape no namespace has.
pub const NOBODY: &str = "gamma-only";

/// `hidden!(codes?, what, alpha's name, a made-up name, |name| call)`: makes the
/// call with each name and checks that alpha's object is refused exactly as the
/// made-up one (see `refused_alike`).
macro_rules! hidden {
    ([$($code:expr),+], $what:expr, $real:expr, $fake:expr, |$name:ident| $call:expr) => {{
        let what: String = $what.to_string();
        let real_name: String = $real.to_string();
        let fake_name: String = $fake.to_string();
        let real = {
            let $name = real_name.clone();
            $call
        };
        let fake = {
            let $name = fake_name.clone();
            $call
        };
        $crate::probes::refused_alike(&[$($code),+], &what, real, &real_name, fake, &fake_name);
    }};
    ($what:expr, $real:expr, $fake:expr, |$name:ident| $call:expr) => {
        hidden!([tonic::Code::NotFound], $what, $real, $fake, |$name| $call)
    };
}

/// Checks that `real`, the answer about another namespace's object, is the
/// answer about `fake`, one that never was: a refusal with one of `codes`, the
/// same code, the same message and bad fields once the names are swapped, and
/// no namespace named in it.
#[track_caller]
pub fn refused_alike<T: Debug>(
    codes: &[Code],
    what: &str,
    real: Result<T, Status>,
    real_name: &str,
    fake: Result<T, Status>,
    fake_name: &str,
) {
    let real = match real {
        Ok(served) => {
            panic!("{what}: LEAK: {real_name} of another namespace was served: {served:?}")
        }
        Err(status) => status,
    };
    assert!(
        codes.contains(&real.code()),
        "{what}: {real_name} of another namespace answered {:?} {:?}; one that does not exist answers {codes:?}, and so must it",
        real.code(),
        real.message()
    );
    let fake = match fake {
        Ok(served) => {
            panic!("{what}: the made-up {fake_name} was served ({served:?}): the check is wrong")
        }
        Err(status) => status,
    };
    assert_eq!(
        real.code(),
        fake.code(),
        "{what}: {real_name} of another namespace and a made-up {fake_name} answer apart: {real:?} / {fake:?}"
    );
    let plain = |status: &Status, name: &str| {
        let fields: Vec<String> = bad_fields(status)
            .iter()
            .map(|f| f.replace(name, "<name>"))
            .collect();
        (status.message().replace(name, "<name>"), fields)
    };
    assert_eq!(
        plain(&real, real_name),
        plain(&fake, fake_name),
        "{what}: the refusal tells {real_name} of another namespace from a made-up {fake_name}"
    );
    for ns in ["alpha", "beta"] {
        assert!(
            !real.message().contains(&format!("{ns}/{real_name}")),
            "{what}: the refusal names {real_name} qualified by its namespace: {real:?}"
        );
    }
    if real.code() == Code::InvalidArgument {
        assert!(
            !bad_fields(&real).is_empty(),
            "{what}: an INVALID_ARGUMENT that names no field: {real:?}"
        );
    }
}

/// A list asked for by another namespace's name answers as for a name nobody
/// has: empty, or refused alike.
#[track_caller]
pub fn listed_alike<T: Debug>(
    what: &str,
    real: Result<Vec<T>, Status>,
    real_name: &str,
    fake: Result<Vec<T>, Status>,
    fake_name: &str,
) {
    match (real, fake) {
        (Ok(real), Ok(fake)) => {
            assert!(
                real.is_empty(),
                "{what}: LEAK: another namespace's {real_name} listed {real:#?}"
            );
            assert!(fake.is_empty(), "{what}: {fake_name} listed {fake:#?}");
        }
        (real, fake) => refused_alike(
            &[Code::NotFound, Code::InvalidArgument],
            what,
            real,
            real_name,
            fake,
            fake_name,
        ),
    }
}

pub fn made_up_job() -> String {
    format!("j_{}", ulid::Ulid::new())
}

pub fn made_up_chain() -> String {
    format!("c_{}", ulid::Ulid::new())
}

/// Asserts a name is shown as its namespace knows it.
#[track_caller]
pub fn bare(what: &str, name: &str) {
    assert!(
        !name.contains('/'),
        "{what}: the name {name:?} is shown qualified, not bare"
    );
}
