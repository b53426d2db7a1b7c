//! Any text as a Go template: parse, and when it parses, execute it against the fully
//! populated synthetic pod under the default budget. No panic, no run over the budget.
#![no_main]

use libfuzzer_sys::fuzz_target;
use scm_template::{Template, TemplateData};

fuzz_target!(|data: &[u8]| {
    let Ok(src) = std::str::from_utf8(data) else { return };
    let Ok(t) = Template::parse("spiffeIDTemplate", src) else { return };
    thread_local! {
        static DATA: TemplateData<'static> = TemplateData::synthetic("example.org", "c1", "cluster.local");
    }
    DATA.with(|d| {
        let _ = t.render(d);
        let _ = t.render(&d.clone().without_pod());
    });
});
