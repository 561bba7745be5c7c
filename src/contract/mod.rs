//! Contracts: JSON Schema (draft-07) documents that say what a call takes and what
//! it returns, and the checks that tell whether one call's output can feed
//! another's input ([`compat`]).

pub mod compat;
pub mod library;
pub mod registry;
pub mod validate;
