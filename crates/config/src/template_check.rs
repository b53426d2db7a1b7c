//! Startup check of a custom `parentIDTemplate`: upstream parses it with
//! `template.New("customParentIDTemplate").Parse(s)` and fails to start with "unable to
//! parse parent ID template: …". The real parser (scm-template, Go's, ported) decides.

/// The name upstream gives a custom parent ID template (it appears in Go's error messages).
pub const PARENT_ID_TEMPLATE_NAME: &str = "customParentIDTemplate";

/// Checks that `src` parses as a Go text/template. `Err` holds Go's parser message.
pub fn check_parent_id_template(src: &str) -> Result<(), String> {
    scm_template::Template::parse(PARENT_ID_TEMPLATE_NAME, src).map(|_| ()).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_parser_messages() {
        assert_eq!(check_parent_id_template(scm_template::DEFAULT_PARENT_ID_TEMPLATE), Ok(()));
        assert_eq!(
            check_parent_id_template("spiffe://x/{{ .NodeMeta.UID"),
            Err("template: customParentIDTemplate:1: unclosed action".into())
        );
        assert!(check_parent_id_template("{{ nofunc }}").unwrap_err().contains("function \"nofunc\" not defined"));
    }
}
