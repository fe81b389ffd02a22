//! The command-line front ends that run the engine in-process: `keel run`, `keel doctor` and the small
//! admin commands.

pub mod admin;
pub mod doctor;
pub mod run;
