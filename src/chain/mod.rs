//! Chains: several HTTP calls run as one job, each step's JSON output feeding the
//! steps after it. [`reference`] reads and renders the references that carry data
//! from step to step; [`wiring`] decides before anything runs whether each one fits.

pub mod check;
pub mod definition;
pub mod graph;
pub mod progress;
pub mod reference;
pub mod wiring;
