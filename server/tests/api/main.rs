//! HTTP tests against the real app: real listener on port 0, real SQLite
//! file in a temporary folder, and the demo ERP as the ERP the sidecar asks
//! about session owners. Time is a `ManualClock`, so no test sleeps through
//! a timeout.

mod helpers;

mod admin;
mod api;
mod cli;
mod cookies;
mod crash;
mod durability;
mod erp_settings;
mod faults;
mod fuzz;
mod identity;
mod policy;
