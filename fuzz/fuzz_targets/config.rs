//! Any text as a ControllerManagerConfig file: loaded, validated, printed back.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let opts = scm_config::LoadOptions { expand_env: data.len() % 2 == 0, ..Default::default() };
    if let Ok(loaded) = scm_config::from_str(text, "fuzz.yaml", &opts, |_| Some("x".into())) {
        let _ = loaded.config.effective_yaml();
    }
});
