//! CLI and wiring only. See `cli.rs` for the flags.

fn main() -> std::process::ExitCode {
    spire_controller_manager::cli::main()
}
