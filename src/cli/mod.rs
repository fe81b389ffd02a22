//! The command-line front ends that run the engine in-process: `keel run` and the small admin commands.

pub mod admin;
pub mod run;
