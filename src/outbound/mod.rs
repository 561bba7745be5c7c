//! What calls out may reach: the classes of address a job may not call unless an
//! operator allows them ([`address`]).

pub mod address;
