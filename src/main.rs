//! CLI and wiring only. See `cli.rs` for the flags.

/// The opt-in `mimalloc` feature replaces the platform allocator (the shipped musl build
/// keeps musl's own: BENCHMARKS.md, "The shipped build").
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    spire_controller_manager::cli::main()
}
