//! The `ControllerManagerConfig` file (`apiVersion: spire.spiffe.io/v1alpha1`), read the way the
//! Go spire-controller-manager reads it: every key upstream reads, upstream's defaults and its
//! startup validation, with every error naming the file and the key.
//!
//! ```no_run
//! let opts = scm_config::LoadOptions {
//!     path: Some("controller-manager-config.yaml".into()),
//!     expand_env: false,
//!     spire_api_socket_flag: None,
//! };
//! match scm_config::load(&opts, scm_config::process_env) {
//!     Ok(loaded) => {
//!         for w in &loaded.warnings {
//!             eprintln!("warning: {w}");
//!         }
//!         println!("{}", loaded.config.effective_yaml());
//!     }
//!     Err(e) => eprintln!("{e}"),
//! }
//! ```
//!
//! Deliberate differences from upstream (more permissive or more talkative; stricter only where
//! upstream would fail later at startup anyway, or silently misbehave — a negative `syncPeriod`,
//! a `null` item in a string list or map, which Go decodes as "" and which in `ignoreNamespaces`
//! ignores every namespace):
//! - `gcInterval` and `controller.cacheSyncTimeout` (Go `time.Duration`, integer nanoseconds
//!   upstream) also accept a Go duration string (`"10s"`).
//! - Unknown keys are reported as warnings (upstream ignores them silently).
//! - The trust domain, leader election settings (`resourceName` required when enabled, lock
//!   type, duration ordering) and negative durations are checked here, at load time; upstream
//!   only fails on them later while starting.
//! - `--expand-env` reports variables that were unset (they still expand to "").
//!
//! Pure apart from reading the one file in [`load`]: no logging, no DNS, no environment access
//! except through the closure passed in.

mod duration;
mod expand;
mod load;
mod model;
mod node;
mod template_check;

pub use duration::{
    DurationError, DurationErrorKind, GoDuration, format_go_duration, format_std_duration, parse_go_duration,
    parse_go_duration_std,
};
pub use expand::{go_expand, go_expand_env, process_env};
pub use load::{ConfigError, LoadOptions, Loaded, Problem, from_str, load, load_path};
pub use model::*;
pub use template_check::{PARENT_ID_TEMPLATE_NAME, check_parent_id_template};
