//! `cargo run -p scm-config --example check_config -- FILE [--expand-env]`: prints the
//! warnings and the effective configuration, or the errors.

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(path) = args.next() else {
        eprintln!("usage: check_config FILE [--expand-env]");
        std::process::exit(2);
    };
    let opts = scm_config::LoadOptions {
        path: Some(path.into()),
        expand_env: args.any(|a| a == "--expand-env"),
        spire_api_socket_flag: None,
    };
    match scm_config::load(&opts, scm_config::process_env) {
        Ok(loaded) => {
            for w in &loaded.warnings {
                eprintln!("warning: {w}");
            }
            print!("{}", loaded.config.effective_yaml());
        }
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    }
}
