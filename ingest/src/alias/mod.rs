//! Alias attribution: which configurations (the default one and each tagged alias) a workspace
//! has, and which of them an event belongs to.
//!
//! [`variables`] derives configurations from HCP Terraform's dynamic-credentials variables.

pub mod attribute;
pub mod inventory;
pub mod variables;
