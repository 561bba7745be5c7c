//! What the registries' services (contracts, templates) share: a version asked
//! for by name, a page of versions, a version to deactivate.

use tonic::Status;

use super::Violations;
use super::convert;

const DEFAULT_PAGE: i32 = 100;
const MAX_PAGE: i32 = 1000;

/// A read of one version: the name checked; version 0 means the latest.
pub fn version_asked(name: &str, version: u32) -> Result<Option<i32>, Status> {
    if !convert::valid_name(name) {
        return Err(super::invalid("name", convert::NAME_RULE));
    }
    Ok((version > 0).then_some(version as i32))
}

/// NOT_FOUND for a version (or, None, any version) of `kind` `name`.
pub fn not_found(kind: &str, name: &str, version: Option<i32>) -> Status {
    Status::not_found(match version {
        Some(v) => format!("{kind} {name} version {v} not found"),
        None => format!("{kind} {name} not found"),
    })
}

/// A page request checked: only one name's versions (when given), the page size,
/// and where the page starts (`name`, `version`).
pub struct PageAsked {
    pub only: Option<String>,
    pub size: i32,
    pub after: Option<(String, i32)>,
}

pub fn page_asked(
    name: String,
    page_size: i32,
    page_token: &str,
    prefix: &str,
    rpc: &str,
) -> Result<PageAsked, Status> {
    let mut v = Violations::default();
    if !name.is_empty() && !convert::valid_name(&name) {
        v.add("name", convert::NAME_RULE);
    }
    let size = convert::page_size(page_size, DEFAULT_PAGE, MAX_PAGE, &mut v);
    let after = convert::page_start(prefix, page_token, rpc, &mut v);
    let after = convert::name_and_version(after, rpc, &mut v);
    v.into_result(PageAsked {
        only: (!name.is_empty()).then_some(name),
        size,
        after,
    })
}

/// A deactivation request checked: the name, and a version (not 0).
pub fn deactivation_asked(name: &str, version: u32) -> Result<i32, Status> {
    let mut v = Violations::default();
    if !convert::valid_name(name) {
        v.add("name", convert::NAME_RULE);
    }
    if version == 0 {
        v.add("version", "required: the version to deactivate");
    }
    v.into_result(version as i32)
}
