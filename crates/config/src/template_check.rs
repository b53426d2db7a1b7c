//! Startup check of a custom `parentIDTemplate` (upstream: `template.New("customParentIDTemplate")
//! .Parse(s)` in `cmd/main.go`, failing with "unable to parse parent ID template: …").
//!
//! TODO(scm-template): this is a stand-in. When `scm_template::Template::parse(name, src)` exists,
//! replace the body of [`check_parent_id_template`] with
//! `scm_template::Template::parse(PARENT_ID_TEMPLATE_NAME, src).map(|_| ()).map_err(|e| e.to_string())`
//! (and add the `scm-template` dependency in Cargo.toml). Until then only the two mistakes that are
//! easy to detect without a real parser are caught: an action that is never closed, and an empty
//! action. Everything else (unknown functions, bad pipelines) is left to the renderer.

/// The name upstream gives a custom parent ID template (it appears in Go's error messages).
pub const PARENT_ID_TEMPLATE_NAME: &str = "customParentIDTemplate";

/// Hook: checks that `src` parses as a Go text/template. `Err` holds the parser's message.
pub fn check_parent_id_template(src: &str) -> Result<(), String> {
    let b = src.as_bytes();
    let mut i = 0;
    while let Some(off) = find(&b[i..], b"{{") {
        let start = i + off;
        let line = 1 + b[..start].iter().filter(|&&c| c == b'\n').count();
        let body_start = start + 2;
        let Some(end) = find_action_end(&b[body_start..]) else {
            return Err(format!("template: {PARENT_ID_TEMPLATE_NAME}:{line}: unclosed action"));
        };
        let body = &src[body_start..body_start + end];
        let inner = body.strip_prefix("- ").unwrap_or(body);
        let inner = inner.strip_suffix(" -").unwrap_or(inner);
        let inner = inner.trim();
        if inner.is_empty() {
            return Err(format!("template: {PARENT_ID_TEMPLATE_NAME}:{line}: missing value for command"));
        }
        i = body_start + end + 2;
    }
    Ok(())
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Offset of the `}}` closing the action whose body starts at `b[0]`, skipping quoted strings,
/// raw strings, character constants and comments.
fn find_action_end(b: &[u8]) -> Option<usize> {
    let mut i = 0;
    if b.starts_with(b"/*") || b.starts_with(b"- /*") {
        let c = find(b, b"*/")?;
        return find(&b[c + 2..], b"}}").map(|e| c + 2 + e);
    }
    while i < b.len() {
        match b[i] {
            b'}' if b.get(i + 1) == Some(&b'}') => return Some(i),
            q @ (b'"' | b'\'') => {
                i += 1;
                while i < b.len() && b[i] != q {
                    if b[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            b'`' => {
                i += 1;
                while i < b.len() && b[i] != b'`' {
                    i += 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_valid_templates() {
        for src in [
            crate::DEFAULT_PARENT_ID_TEMPLATE,
            "spiffe://{{ .TrustDomain }}/spire/agent/k8s_psat/{{ .ClusterName }}/{{ .NodeMeta.Name }}",
            "spiffe://example.org/static",
            "{{- .TrustDomain -}}",
            r#"{{ printf "%s}}" .TrustDomain }}"#,
            "{{/* a comment }} */}}x",
        ] {
            assert_eq!(check_parent_id_template(src), Ok(()), "{src}");
        }
    }

    #[test]
    fn rejects_unclosed_and_empty_actions() {
        assert_eq!(
            check_parent_id_template("spiffe://{{ .TrustDomain }/x"),
            Err("template: customParentIDTemplate:1: unclosed action".into())
        );
        assert_eq!(
            check_parent_id_template("a\n{{ .X"),
            Err("template: customParentIDTemplate:2: unclosed action".into())
        );
        assert_eq!(
            check_parent_id_template("x{{ }}"),
            Err("template: customParentIDTemplate:1: missing value for command".into())
        );
    }
}
