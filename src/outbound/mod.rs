//! What calls out may reach: the classes of address a job may not call unless an
//! operator allows them ([`address`]), and the guard that judges each call's
//! destination where it connects ([`guard`]).

pub mod address;
pub mod destinations;
pub mod guard;
