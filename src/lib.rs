//! spire-controller-manager: the runtime around the pure crates (`scm-*`).
//!
//! Rooms: `cli` (flags and subcommands).

pub mod cli;
